/**
 * Moondream 3: captions, questions with grounded reasoning, pointing, detection and gaze, as
 * typed results. Each call is one chat request (the vision task in `task`) whose token and
 * coordinate stream is parsed here.
 */

import { InvalidRequestError } from './errors'
import type { ChatStream } from './stream'
import type { ImageInput } from './tasks/media'
import { float32s, imageDataUrl } from './tasks/media'
import type { ChatDelta, ChatMessage, ChatOptions, ContentPart } from './types'

/** The model id the reference clients use for Moondream 3. */
export const MOONDREAM_MODEL = 'moondream/moondream3-preview'

/**
 * Capability token ids of the stream (the reference clients' values; the engine reports no
 * others for Moondream 3).
 */
export const MOONDREAM_TOKENS = { answer: 3, coord: 5, startGround: 7, placeholder: 8, endGround: 9 } as const

/** A point in normalised image coordinates: 0–1 from the left and from the top. */
export interface Point {
  x: number
  y: number
}

/** A detected object's box, normalised like {@link Point}. */
export interface Box {
  xMin: number
  yMin: number
  xMax: number
  yMax: number
}

/**
 * A grounded span of the reasoning text: `reasoning.text.slice(start, end)` is the text it
 * grounds. Offsets are UTF-16 code units, JavaScript's own string indexing (the Python
 * client counts code points, orchard-rs bytes).
 */
export interface GroundingSpan {
  start: number
  end: number
  points: Point[]
}

export interface MoondreamQueryResult {
  answer: string
  /** Present only when the reasoning grounded something. */
  reasoning?: { text: string; grounding: GroundingSpan[] }
}

/** A point `[x, y]` or a box `[x0, y0, x1, y1]` the question refers to. */
export type SpatialRef = readonly [number, number] | readonly [number, number, number, number]

/** Sampling and control options every Moondream call takes. */
export type MoondreamOptions = Pick<
  ChatOptions,
  'signal' | 'stallTimeoutMs' | 'maxTokens' | 'temperature' | 'topP' | 'topK' | 'seed' | 'deterministic'
>

export interface CaptionOptions extends MoondreamOptions {
  /** `normal` (default), `short` or `long`. */
  length?: 'short' | 'normal' | 'long'
  /** Resolve to an async iterable of caption text as it is generated. */
  stream?: boolean
}

export interface QueryOptions extends MoondreamOptions {
  /** Reason (with grounding) before answering. Default: on when `spatialRefs` are given, else off. */
  reasoning?: boolean
  spatialRefs?: SpatialRef[]
}

const LENGTHS = ['short', 'normal', 'long']

function unitNumber(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new InvalidRequestError(
      `${field}: expected a number from 0 to 1 (normalised image coordinates), got ${JSON.stringify(v)}`,
    )
  }
  return v
}

function capability(name: string, data: number[]): ContentPart {
  return { type: 'capability', name, data }
}

/** A spatial reference as capability parts: a point → coord; a box → its centre and size. */
function refParts(ref: unknown, field: string): ContentPart[] {
  if (!Array.isArray(ref) || (ref.length !== 2 && ref.length !== 4)) {
    throw new InvalidRequestError(`${field}: expected a point [x, y] or a box [x0, y0, x1, y1]`)
  }
  const v = ref.map((n, i) => unitNumber(n, `${field}[${i}]`))
  if (v.length === 2) return [capability('coord', v)]
  const [x0, y0, x1, y1] = v as [number, number, number, number]
  return [
    capability('coord', [(x0 + x1) / 2, (y0 + y1) / 2]),
    capability('size', [Math.abs(x1 - x0), Math.abs(y1 - y0)]),
  ]
}

function text(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new InvalidRequestError(`${field}: expected a non-empty string`)
  return v
}

function checkOptions(options: unknown): Record<string, unknown> {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidRequestError('options: expected an options object')
  }
  return options as Record<string, unknown>
}

/** The coordinates in a stream: `.coord` values and `.size` (width, height) pairs. */
interface Coordinates {
  coords: number[]
  sizes: number[]
}

function collectCoordinates(d: ChatDelta, into: Coordinates): void {
  const id = d.modalDecoderId
  if (id === undefined || d.modalBytesB64 === undefined) return
  if (id.endsWith('.coord')) into.coords.push(...float32s(d.modalBytesB64, id))
  else if (id.endsWith('.size')) into.sizes.push(...float32s(d.modalBytesB64, id))
}

function pairs(values: number[]): Point[] {
  return Array.from({ length: Math.floor(values.length / 2) }, (_, i) => ({ x: values[2 * i]!, y: values[2 * i + 1]! }))
}

/** A client for a loaded Moondream 3 model; get one with `client.moondream(model?)`. */
export class Moondream {
  readonly #chat: (messages: ChatMessage[], options: ChatOptions) => ChatStream

  /** @internal use `client.moondream()` */
  constructor(chat: (messages: ChatMessage[], options: ChatOptions) => ChatStream) {
    this.#chat = chat
  }

  /** Send the request. The stream is wrapped: a `ChatStream` is thenable, and awaiting it would wait for its result. */
  async #stream(
    image: ImageInput | null,
    parts: ContentPart[],
    options: object,
    extra: ChatOptions,
  ): Promise<{ deltas: ChatStream }> {
    const { length: _l, stream: _s, reasoning: _r, spatialRefs: _f, ...rest } = checkOptions(options)
    const content: ContentPart[] = []
    if (image !== null) content.push({ type: 'input_image', image_url: await imageDataUrl(image, 'image') })
    content.push(...parts)
    return { deltas: this.#chat([{ role: 'user', content }], { ...(rest as MoondreamOptions), ...extra }) }
  }

  /** Describe an image. With `stream: true`, an async iterable of the caption text. */
  caption(image: ImageInput, options?: CaptionOptions & { stream?: false }): Promise<{ caption: string }>
  caption(image: ImageInput, options: CaptionOptions & { stream: true }): AsyncIterable<string>
  caption(image: ImageInput, options: CaptionOptions = {}): Promise<{ caption: string }> | AsyncIterable<string> {
    const start = async (): Promise<{ deltas: ChatStream }> => {
      const length = checkOptions(options).length ?? 'normal'
      if (typeof length !== 'string' || !LENGTHS.includes(length)) {
        throw new InvalidRequestError(
          `options.length: expected 'short', 'normal' or 'long', got ${JSON.stringify(length)}`,
        )
      }
      return this.#stream(image, [], options, { task: `caption_${length}` })
    }
    if (options?.stream === true) {
      return (async function* () {
        for await (const d of (await start()).deltas) if (d.content) yield d.content
      })()
    }
    return (async () => {
      let caption = ''
      for await (const d of (await start()).deltas) caption += d.content ?? ''
      return { caption }
    })()
  }

  /**
   * Ask about an image (or without one). With reasoning, grounded spans of the reasoning come
   * with the points they refer to.
   */
  async query(image: ImageInput | null, question: string, options: QueryOptions = {}): Promise<MoondreamQueryResult> {
    const refs = checkOptions(options).spatialRefs ?? []
    if (!Array.isArray(refs)) throw new InvalidRequestError('options.spatialRefs: expected an array of points or boxes')
    const parts = refs.flatMap((r, i) => refParts(r, `options.spatialRefs[${i}]`))
    parts.push({ type: 'input_text', text: text(question, 'question') })
    const reasoning = options.reasoning ?? refs.length > 0
    if (typeof reasoning !== 'boolean') throw new InvalidRequestError('options.reasoning: expected a boolean')
    const { deltas } = await this.#stream(image, parts, options, { reasoning })

    const T = MOONDREAM_TOKENS
    let thought = ''
    let answer = ''
    let answering = false
    let span: { start: number; coords: number[] } | undefined
    const grounding: GroundingSpan[] = []
    for await (const d of deltas) {
      for (const t of d.tokens) {
        if (t === T.startGround) span = { start: thought.length, coords: [] }
        else if (t === T.endGround && span !== undefined) {
          grounding.push({ start: span.start, end: thought.length, points: pairs(span.coords) })
          span = undefined
        } else if (t === T.answer) answering = true
      }
      if (span !== undefined && d.modalDecoderId?.endsWith('.coord') && d.modalBytesB64 !== undefined) {
        span.coords.push(...float32s(d.modalBytesB64, d.modalDecoderId))
      }
      if (answering) answer += d.content ?? ''
      else thought += d.content ?? ''
    }
    if (!answering)
      return grounding.length > 0 ? { answer: thought, reasoning: { text: thought, grounding } } : { answer: thought }
    return grounding.length > 0 ? { answer, reasoning: { text: thought, grounding } } : { answer }
  }

  /** Where `object` is in the image: one point per instance. */
  async point(image: ImageInput, object: string, options: MoondreamOptions = {}): Promise<{ points: Point[] }> {
    const found = await this.#coordinates(
      image,
      [{ type: 'input_text', text: text(object, 'object') }],
      options,
      'point',
    )
    return { points: pairs(found.coords) }
  }

  /** Boxes around each instance of `object`. */
  async detect(image: ImageInput, object: string, options: MoondreamOptions = {}): Promise<{ objects: Box[] }> {
    const found = await this.#coordinates(
      image,
      [{ type: 'input_text', text: text(object, 'object') }],
      options,
      'detect',
    )
    const centres = pairs(found.coords)
    const sizes = pairs(found.sizes)
    const objects = centres.slice(0, sizes.length).map((c, i) => {
      const { x: w, y: h } = sizes[i]!
      return { xMin: c.x - w / 2, yMin: c.y - h / 2, xMax: c.x + w / 2, yMax: c.y + h / 2 }
    })
    return { objects }
  }

  /** Where a face whose eye is at `eye` is looking; `null` when the model finds no gaze. */
  async gaze(image: ImageInput, eye: Point, options: MoondreamOptions = {}): Promise<{ gaze: Point | null }> {
    if (eye === null || typeof eye !== 'object') throw new InvalidRequestError('eye: expected a point { x, y }')
    const at = [unitNumber(eye.x, 'eye.x'), unitNumber(eye.y, 'eye.y')]
    const found = await this.#coordinates(image, [capability('coord', at)], options, 'detect_gaze')
    return { gaze: pairs(found.coords)[0] ?? null }
  }

  async #coordinates(
    image: ImageInput,
    parts: ContentPart[],
    options: MoondreamOptions,
    task: string,
  ): Promise<Coordinates> {
    const found: Coordinates = { coords: [], sizes: [] }
    for await (const d of (await this.#stream(image, parts, options, { task })).deltas) collectCoordinates(d, found)
    return found
  }
}
