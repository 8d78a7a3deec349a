/** The Responses API on top of chat streams (request → chat; accumulator items → response events). */

export { prepareResponses } from './request'
export type { Prepared } from './request'
export { ResponseStream } from './stream'
export type { Response, ResponseSource } from './stream'
