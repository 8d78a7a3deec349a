/**
 * Modal facades: `client.audio` (text to speech, speech to text) and `client.images`
 * (generation, editing). One engine request per call; speech and images resolve to
 * artifacts, transcription to text.
 */

import { readFile } from 'node:fs/promises'

import type { NativeEngine, NativeTask } from '../index'
import { InvalidRequestError, native, ProtocolError } from './errors'
import { requestJson } from './json'
import type { ImageInput } from './tasks/media'
import { imageBytes } from './tasks/media'
import type { TaskDelta } from './tasks/prefill'
import type { Prepared, RequestPromise } from './tasks/request'
import { abortError, runRequest, splitOptions } from './tasks/request'
import { ModalStream } from './tasks/stream'
import type { ChatOptions } from './types'

/** One output file of a modal call (a WAV, a PNG, ...). */
export interface ModalArtifact {
  /** `audio`, `image`, ... (`modal_type`). */
  type: string | null
  /** `artifact.delta` or `artifact.done` (`modal_event`). */
  event: string | null
  mimeType: string | null
  /** The engine decoder that produced it, e.g. `flux`, `qwen_image_edit`. */
  decoderId: string | null
  data: Uint8Array
  /** `modal_metadata_json`, parsed (e.g. `{ width, height }`, `{ sample_rate }`). */
  metadata: Record<string, unknown> | null
  /** The delta that carried it. */
  delta: TaskDelta
}

/** Sampling options as in chat; `seed` is sent as `rng_seed` (default 0, as the reference client sends). */
interface Sampling extends Pick<ChatOptions, 'temperature' | 'topP' | 'topK' | 'minP' | 'seed' | 'deterministic'> {
  /** Extra engine options, merged into `modal_options_json` (e.g. ideogram's `mu`, `std`). */
  modalOptions?: Record<string, unknown>
  signal?: AbortSignal
  /** Return a {@link ModalStream} of the artifacts as they arrive instead of resolving once. */
  stream?: boolean
}

/** `stream: true`: the call returns a {@link ModalStream}. */
type Streamed<O> = O & { stream: true }
/** Without `stream: true`: the call resolves once to every artifact. */
type Resolved<O> = O & { stream?: false }

export interface SpeechOptions extends Sampling {
  /** A voice to clone: the audio file's bytes, or its path. */
  referenceAudio?: Uint8Array | string
  language?: string
  speaker?: string
  /** Default 24 000. */
  sampleRate?: number
  /** Default 8192. */
  maxOutputTokens?: number
}

export interface TranscribeOptions {
  signal?: AbortSignal
}

export interface ImageGenerateOptions extends Sampling {
  /** Default 1024. */
  height?: number
  /** Default 1024. */
  width?: number
  /** Default 48. */
  numSteps?: number
  /** Default 7. */
  guidanceScale?: number
}

export interface ImageEditOptions extends Sampling {
  height?: number
  width?: number
  /** Default 50. */
  numSteps?: number
  /** Default 4. */
  trueCfgScale?: number
  /** Default `" "`. */
  negativePrompt?: string
}

function artifactOf(d: TaskDelta): ModalArtifact {
  let metadata: Record<string, unknown> | null = null
  if (d.modalMetadataJson !== undefined && d.modalMetadataJson !== '') {
    try {
      metadata = JSON.parse(d.modalMetadataJson) as Record<string, unknown>
    } catch (e) {
      throw new ProtocolError(`modal_metadata_json is not JSON (${e instanceof Error ? e.message : String(e)})`)
    }
  }
  return {
    type: d.modalType ?? null,
    event: d.modalEvent ?? null,
    mimeType: d.modalMimeType ?? null,
    decoderId: d.modalDecoderId ?? null,
    data: new Uint8Array(Buffer.from(d.modalBytesB64 ?? '', 'base64')),
    metadata,
    delta: d,
  }
}

async function audioBytes(audio: unknown): Promise<Uint8Array | undefined> {
  if (audio === undefined || audio instanceof Uint8Array) return audio
  if (typeof audio !== 'string')
    throw new InvalidRequestError('options.referenceAudio: expected audio bytes (Uint8Array or Buffer) or a file path')
  try {
    return await readFile(audio)
  } catch (e) {
    throw new InvalidRequestError(`options.referenceAudio: cannot read the file ${JSON.stringify(audio)}`, { cause: e })
  }
}

function pcmBytes(pcm: unknown): Uint8Array {
  const samples =
    pcm instanceof Float32Array
      ? pcm
      : Array.isArray(pcm) && pcm.every((x) => typeof x === 'number' && Number.isFinite(x))
        ? Float32Array.from(pcm)
        : undefined
  if (samples === undefined)
    throw new InvalidRequestError('pcm: expected a Float32Array or an array of finite numbers (mono float32 samples)')
  const bytes = new Uint8Array(samples.length * 4)
  const view = new DataView(bytes.buffer)
  for (const [i, v] of samples.entries()) view.setFloat32(i * 4, v, true)
  return bytes
}

/** @internal one modal call as the facades describe it; `media` resolves its binary input. */
interface ModalCall {
  model: unknown
  kind: string
  text: string | undefined
  options: unknown
  media: (rest: Record<string, unknown>) => Promise<Uint8Array | undefined>
}

/** @internal check the call (its errors arrive asynchronously) and say how to send it. */
function prepare(
  engine: NativeEngine,
  call: ModalCall,
  streamable: boolean,
): Omit<Prepared<string[]>, 'send'> & { send: () => Promise<NativeTask> } {
  if (typeof call.model !== 'string' || call.model.length === 0) {
    throw new InvalidRequestError('model: expected the id of a loaded model')
  }
  const model = call.model
  // Every key passes here: the core checks them against the call and names an unknown one.
  const keys = call.options !== null && typeof call.options === 'object' ? Object.keys(call.options) : []
  const { signal, rest } = splitOptions<{ signal?: AbortSignal } & Record<string, unknown>>(
    call.options,
    call.kind,
    keys,
  )
  const { referenceAudio: _a, ...wire } = rest
  if (streamable) {
    // `stream` picks the form of the result; it is not sent.
    if (wire.stream !== undefined && typeof wire.stream !== 'boolean') {
      throw new InvalidRequestError('options.stream: expected a boolean')
    }
    delete wire.stream
  }
  const json = requestJson({ text: call.text, options: wire })
  return {
    signal,
    send: async () => {
      const media = await call.media(rest)
      return engine.modalTask(
        model,
        call.kind,
        json,
        media === undefined ? undefined : Buffer.from(media.buffer, media.byteOffset, media.byteLength),
      )
    },
  }
}

/** @internal one modal request resolving once. */
function modal<T>(engine: NativeEngine, call: ModalCall, finish: (deltas: TaskDelta[]) => T): RequestPromise<T> {
  return runRequest<string[], T>(
    call.kind,
    () => prepare(engine, call, call.kind !== 'transcribe'),
    (prompts) => finish(JSON.parse(prompts[0] ?? '[]') as TaskDelta[]),
  )
}

/** @internal a call returning artifacts: resolved once, or streamed with `stream: true`. */
function artifactCall(
  engine: NativeEngine,
  call: ModalCall,
): RequestPromise<ModalArtifact[]> | ModalStream<ModalArtifact> {
  const options = call.options as { stream?: unknown } | null | undefined
  if (options === null || typeof options !== 'object' || options.stream !== true) return modal(engine, call, artifacts)
  let signal: AbortSignal | undefined
  let handle: Promise<NativeTask>
  try {
    const p = prepare(engine, call, true)
    signal = p.signal
    handle = signal?.aborted ? Promise.reject(abortError(signal, call.kind)) : native(p.send)
  } catch (e) {
    handle = Promise.reject(e)
  }
  return new ModalStream(handle, signal, artifacts)
}

const artifacts = (deltas: TaskDelta[]): ModalArtifact[] =>
  deltas.filter((d) => d.modalBytesB64 !== undefined).map(artifactOf)

type ModalResult = RequestPromise<ModalArtifact[]> | ModalStream<ModalArtifact>

/** What both facades send through. */
abstract class Facade {
  protected readonly engine: NativeEngine

  /** @internal use `client.audio` or `client.images` */
  constructor(engine: NativeEngine) {
    this.engine = engine
  }
}

/** `client.audio`: text to speech and speech to text. */
export class AudioClient extends Facade {
  /**
   * Speak `text` (request type `audio`, task `text_to_speech`); resolves to the audio
   * artifacts, or with `stream: true` returns a {@link ModalStream} of them.
   */
  speech(model: string, input: string, options?: Resolved<SpeechOptions>): RequestPromise<ModalArtifact[]>
  speech(model: string, input: string, options: Streamed<SpeechOptions>): ModalStream<ModalArtifact>
  speech(model: string, input: string, options: SpeechOptions = {}): ModalResult {
    const media = (o: Record<string, unknown>) => audioBytes(o.referenceAudio)
    return artifactCall(this.engine, { model, kind: 'speech', text: input, options, media })
  }

  /** The same as {@link AudioClient.speech} (the reference client's name). */
  generate(model: string, input: string, options?: Resolved<SpeechOptions>): RequestPromise<ModalArtifact[]>
  generate(model: string, input: string, options: Streamed<SpeechOptions>): ModalStream<ModalArtifact>
  generate(model: string, input: string, options: SpeechOptions = {}): ModalResult {
    return this.speech(model, input, options as Resolved<SpeechOptions>)
  }

  /** Transcribe mono float32 PCM (16 kHz for the usual models; request type `omni`). */
  transcribe(model: string, pcm: Float32Array | number[], options: TranscribeOptions = {}): RequestPromise<string> {
    return modal(
      this.engine,
      { model, kind: 'transcribe', text: undefined, options, media: async () => pcmBytes(pcm) },
      (deltas) => deltas.map((d) => d.content ?? '').join(''),
    )
  }
}

/** `client.images`: image generation and editing. */
export class ImagesClient extends Facade {
  /**
   * Generate an image from `prompt` (task `text_to_image`); resolves to the image artifacts,
   * or with `stream: true` returns a {@link ModalStream} of them.
   */
  generate(model: string, prompt: string, options?: Resolved<ImageGenerateOptions>): RequestPromise<ModalArtifact[]>
  generate(model: string, prompt: string, options: Streamed<ImageGenerateOptions>): ModalStream<ModalArtifact>
  generate(model: string, prompt: string, options: ImageGenerateOptions = {}): ModalResult {
    return artifactCall(this.engine, {
      model,
      kind: 'image_generate',
      text: prompt,
      options,
      media: async () => undefined,
    })
  }

  /**
   * Edit `image` as `prompt` says (task `image_to_image`); resolves to the image artifacts,
   * or with `stream: true` returns a {@link ModalStream} of them.
   */
  edit(
    model: string,
    image: ImageInput,
    prompt: string,
    options?: Resolved<ImageEditOptions>,
  ): RequestPromise<ModalArtifact[]>
  edit(
    model: string,
    image: ImageInput,
    prompt: string,
    options: Streamed<ImageEditOptions>,
  ): ModalStream<ModalArtifact>
  edit(model: string, image: ImageInput, prompt: string, options: ImageEditOptions = {}): ModalResult {
    const media = () => imageBytes(image, 'image')
    return artifactCall(this.engine, { model, kind: 'image_edit', text: prompt, options, media })
  }
}
