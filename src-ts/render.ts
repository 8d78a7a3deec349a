/** Prompt rendering without an engine. */

import { nativeSync } from './errors'
import { requestJson } from './json'
import { addon, modelSpecsDir } from './native'
import type { ChatMessage, FunctionTool } from './types'

export interface RenderInput {
  /** The model's config.json (at least `model_type`). */
  config: Record<string, unknown>
  messages: ChatMessage[]
  tools?: FunctionTool[] | null
  reasoning?: boolean | string | null
  task?: string | null
}

export interface RenderedPrompt {
  prompt: string
  layout: Array<{ type: string; length: number }>
  reasoning: boolean
}

/** Render the exact prompt text the engine would receive for `input`. */
export function renderChat(input: RenderInput): RenderedPrompt {
  return nativeSync(() => addon().renderChat(requestJson(input), modelSpecsDir()))
}
