/** The Responses API on top of chat streams (request → chat; accumulator items → response events). */

export type { Prepared } from './request'
export { prepareResponses } from './request'
export type { Response, ResponseToolCall } from './stream'
export { ResponseStream } from './stream'
