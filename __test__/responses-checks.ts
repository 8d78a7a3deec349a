// Checks of Responses event streams against the reference's rules, shared by the Responses suites.
import { expect } from 'vitest'

import type {
  Response,
  ResponseFunctionCall,
  ResponseFunctionTool,
  ResponseStreamEvent,
  ResponseStreamEventType,
} from '../src-ts'

/** The event types in order, with runs of the same delta type collapsed to one `type*`. */
export function shape(events: ResponseStreamEvent[]): string[] {
  const out: string[] = []
  for (const e of events) {
    const t = e.type.endsWith('.delta') || e.type === 'response.output_token' ? `${e.type}*` : e.type
    if (t.endsWith('*') && out[out.length - 1] === t) continue
    out.push(t)
  }
  return out
}

export function checkInvariants(events: ResponseStreamEvent[]): void {
  for (const [i, e] of events.entries()) expect(e.sequence_number).toBe(i)
  expect(events[0]!.type).toBe('response.created')
  expect(events[1]!.type).toBe('response.in_progress')
  expect(['response.completed', 'response.incomplete', 'response.failed']).toContain(events[events.length - 1]!.type)
}

/** Event shapes of one output item, and of every response's start. */
export const REASONING_BLOCK = [
  'response.output_item.added',
  'response.reasoning.delta*',
  'response.reasoning.done',
  'response.output_item.done',
]
export const MESSAGE_BLOCK = [
  'response.output_item.added',
  'response.content_part.added',
  'response.output_text.delta*',
  'response.output_text.done',
  'response.content_part.done',
  'response.output_item.done',
]
export const CALL_BLOCK = [
  'response.output_item.added',
  'response.function_call_arguments.delta*',
  'response.function_call_arguments.done',
  'response.output_item.done',
]
export const HEAD = ['response.created', 'response.in_progress']

/** The event(s) of type `T` (some union members share one shape for several types). */
type EventOf<T extends ResponseStreamEventType> = ResponseStreamEvent extends infer E
  ? E extends { type: infer U }
    ? T extends U
      ? E & { type: T }
      : never
    : never
  : never

export function ofType<T extends ResponseStreamEventType>(events: ResponseStreamEvent[], type: T): Array<EventOf<T>> {
  return events.filter((e): e is EventOf<T> => e.type === type)
}

const weather: ResponseFunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
    additionalProperties: false,
  },
}
const clock: ResponseFunctionTool = {
  type: 'function',
  name: 'get_time',
  description: 'The time in a zone, some hours ahead',
  parameters: {
    type: 'object',
    properties: { zone: { type: 'string' }, hours: { type: 'integer', minimum: 0, maximum: 23 } },
    required: ['zone', 'hours'],
    additionalProperties: false,
  },
}
export const tools = [weather, clock]

/** How each family frames a call in the raw text (`tool_calling.formats[0]` start and end). */
export const LLAMA_CALL: [string, string] = ['<|python_tag|>', '<|eom_id|>']
export const QWEN_CALL: [string, string] = ['<tool_call>\n', '\n</tool_call>']

/** The arguments each tool's schema allows, checked by hand. */
function checkArguments(name: string, args: Record<string, unknown>): void {
  if (name === 'get_weather') {
    expect(Object.keys(args)).toEqual(['city'])
    expect(typeof args.city).toBe('string')
  } else {
    expect(name).toBe('get_time')
    expect(Object.keys(args).sort()).toEqual(['hours', 'zone'])
    expect(typeof args.zone).toBe('string')
    expect(Number.isInteger(args.hours)).toBe(true)
    expect(args.hours).toBeGreaterThanOrEqual(0)
    expect(args.hours).toBeLessThanOrEqual(23)
  }
}

/**
 * The events of the function-call item at `index`, checked against the reference's rules.
 * Returns the item as completed.
 */
export function checkFunctionCall(
  events: ResponseStreamEvent[],
  index: number,
  [start, end]: [string, string],
): ResponseFunctionCall {
  const added = ofType(events, 'response.output_item.added').filter((e) => e.output_index === index)
  expect(added).toHaveLength(1)
  const opened = added[0]!.item as ResponseFunctionCall
  // Opens with its name and call_id, empty arguments.
  expect(opened.type).toBe('function_call')
  expect(opened.id).toMatch(/^fc_/)
  expect(opened.call_id).toMatch(/^call_/)
  expect(tools.map((t) => t.name)).toContain(opened.name)
  expect(opened.arguments).toBe('')
  expect(opened.status).toBe('in_progress')

  const deltas = ofType(events, 'response.function_call_arguments.delta').filter((e) => e.output_index === index)
  const done = ofType(events, 'response.function_call_arguments.done').filter((e) => e.output_index === index)
  const closed = ofType(events, 'response.output_item.done').filter((e) => e.output_index === index)
  expect(deltas.length).toBeGreaterThan(0)
  expect(done).toHaveLength(1)
  expect(closed).toHaveLength(1)
  for (const d of deltas) expect(d.item_id).toBe(opened.id)
  expect(done[0]!.item_id).toBe(opened.id)
  // added < every delta < arguments.done < output_item.done
  const seq = deltas.map((d) => d.sequence_number)
  expect(Math.min(...seq)).toBeGreaterThan(added[0]!.sequence_number)
  expect(Math.max(...seq)).toBeLessThan(done[0]!.sequence_number)
  expect(done[0]!.sequence_number).toBeLessThan(closed[0]!.sequence_number)

  // Only the done arguments are JSON; they match the tool's schema.
  const args = JSON.parse(done[0]!.arguments) as Record<string, unknown>
  expect(done[0]!.name).toBe(opened.name)
  checkArguments(opened.name, args)
  const item = closed[0]!.item as ResponseFunctionCall
  expect(item).toEqual({ ...opened, arguments: done[0]!.arguments, status: 'completed' })

  // Untagged deltas are the raw call text, framing included; tagged ones carry one argument's value.
  const raw = deltas
    .filter((d) => d.field_path === null)
    .map((d) => d.delta)
    .join('')
  expect(raw.startsWith(start)).toBe(true)
  expect(raw.endsWith(end)).toBe(true)
  expect(JSON.parse(raw.slice(start.length, raw.length - end.length))).toEqual({ name: opened.name, arguments: args })
  const fields = new Map<string, string>()
  for (const d of deltas)
    if (d.field_path !== null) fields.set(d.field_path, (fields.get(d.field_path) ?? '') + d.delta)
  expect([...fields.keys()].sort()).toEqual(Object.keys(args).sort())
  for (const [field, text] of fields)
    expect(text).toBe(typeof args[field] === 'string' ? args[field] : JSON.stringify(args[field]))
  return item
}

/** The reasoning item at `index`: deltas add up to the done text, which the item keeps. Returns the text. */
export function checkReasoning(events: ResponseStreamEvent[], response: Response, index: number): string {
  const added = ofType(events, 'response.output_item.added').find((e) => e.output_index === index)!
  expect(added.item.type).toBe('reasoning')
  expect(added.item.id).toMatch(/^rs_/)
  const deltas = ofType(events, 'response.reasoning.delta')
  expect(deltas.length).toBeGreaterThan(0)
  for (const d of deltas) {
    expect(d.item_id).toBe(added.item.id)
    expect(d.output_index).toBe(index)
  }
  const done = ofType(events, 'response.reasoning.done')
  expect(done).toHaveLength(1)
  const text = done[0]!.text
  expect(text.length).toBeGreaterThan(0)
  expect(text).toBe(
    deltas
      .map((d) => d.delta)
      .join('')
      .trim(),
  )
  const item = response.output[index]!
  expect(item.type).toBe('reasoning')
  if (item.type === 'reasoning') {
    expect(item.id).toBe(added.item.id)
    expect(item.status).toBe('completed')
    expect(item.content).toEqual([{ type: 'reasoning_text', text }])
  }
  return text
}

/** No marker or reasoning text leaks into message or call events. */
export function expectNoThinkMarkers(events: ResponseStreamEvent[]): void {
  for (const e of events) {
    const piece = 'delta' in e ? e.delta : 'text' in e ? e.text : ''
    expect(piece).not.toMatch(/<\/?think>/)
  }
}
