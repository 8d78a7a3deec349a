/**
 * Modal facades: `client.audio` (text to speech, speech to text) and `client.images`
 * (generation, editing). One engine request per call; speech and images resolve to
 * artifacts, transcription to text.
 */

import { readFile } from 'node:fs/promises'

import type { NativeEngine } from '../index'
import { InvalidRequestError, ProtocolError } from './errors'
import { requestJson } from './json'
import type { ImageInput } from './tasks/media'
import { imageBytes } from './tasks/media'
import type { TaskDelta } from './tasks/prefill'
import type { RequestPromise } from './tasks/request'
import { runRequest, splitOptions } from './tasks/request'
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
}

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

/** @internal one modal request: `media` resolves the call's binary input. */
function modal<T>(
  engine: NativeEngine,
  call: {
    model: unknown
    kind: string
    text: string | undefined
    options: unknown
    media: (rest: Record<string, unknown>) => Promise<Uint8Array | undefined>
  },
  finish: (deltas: TaskDelta[]) => T,
): RequestPromise<T> {
  return runRequest<string[], T>(
    call.kind,
    () => {
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
    },
    (prompts) => finish(JSON.parse(prompts[0] ?? '[]') as TaskDelta[]),
  )
}

const artifacts = (deltas: TaskDelta[]): ModalArtifact[] =>
  deltas.filter((d) => d.modalBytesB64 !== undefined).map(artifactOf)

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
  /** Speak `text` (request type `audio`, task `text_to_speech`); resolves to the audio artifacts. */
  speech(model: string, input: string, options: SpeechOptions = {}): RequestPromise<ModalArtifact[]> {
    return modal(
      this.engine,
      { model, kind: 'speech', text: input, options, media: (o) => audioBytes(o.referenceAudio) },
      artifacts,
    )
  }

  /** The same as {@link AudioClient.speech} (the reference client's name). */
  generate(model: string, input: string, options: SpeechOptions = {}): RequestPromise<ModalArtifact[]> {
    return this.speech(model, input, options)
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
  /** Generate an image from `prompt` (task `text_to_image`); resolves to the image artifacts. */
  generate(model: string, prompt: string, options: ImageGenerateOptions = {}): RequestPromise<ModalArtifact[]> {
    return modal(
      this.engine,
      { model, kind: 'image_generate', text: prompt, options, media: async () => undefined },
      artifacts,
    )
  }

  /** Edit `image` as `prompt` says (task `image_to_image`); resolves to the image artifacts. */
  edit(
    model: string,
    image: ImageInput,
    prompt: string,
    options: ImageEditOptions = {},
  ): RequestPromise<ModalArtifact[]> {
    return modal(
      this.engine,
      { model, kind: 'image_edit', text: prompt, options, media: () => imageBytes(image, 'image') },
      artifacts,
    )
  }
}
