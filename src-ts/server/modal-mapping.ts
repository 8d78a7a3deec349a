/**
 * OpenAI audio and image request bodies → orchard's `client.audio` and `client.images` calls:
 * which fields are accepted, ignored or refused, and what each becomes. Ranges are checked by
 * orchard's core; {@link ParamNames} renames its option names back to the OpenAI fields.
 */

import type { ImageEditOptions, ImageGenerateOptions, SpeechOptions } from '../modal'
import { badRequest, type ParamNames } from './errors'
import { checkKeys, type FormShape, isObject, type Json, model, optChoice, optNumber, optString } from './fields'

/** Speech formats the engine cannot produce (it writes WAV; there is no encoder here). */
const UNENCODABLE_AUDIO = ['mp3', 'opus', 'aac', 'flac']

function prompt(o: Json, key: string): string {
  const v = o[key]
  if (typeof v !== 'string' || v.trim().length === 0) throw badRequest(key, 'expected a non-empty string')
  return v
}

/** Refuse `key` unless it is absent or one of `allowed` (values that need nothing done). */
function onlyDefault(o: Json, key: string, allowed: readonly unknown[], why: string): void {
  const v = o[key]
  if (v !== undefined && v !== null && !allowed.includes(v)) throw badRequest(key, why)
}

// ---------------------------------------------------------------------------------------
// Speech

const SPEECH_FIELDS = new Set([
  'model',
  'input',
  'voice',
  'instructions',
  'response_format',
  'speed',
  'stream_format',
  // orchard extensions
  'seed',
  'language',
  'sample_rate',
])

export interface SpeechRequest {
  model: string
  input: string
  options: SpeechOptions
  /** `wav` is the engine's file as it is; `pcm` its raw 16-bit samples. */
  format: 'wav' | 'pcm'
  names: ParamNames
}

/** A `POST /v1/audio/speech` body. */
export function mapSpeechRequest(o: Json): SpeechRequest {
  checkKeys(o, SPEECH_FIELDS, '')
  const id = model(o)
  const input = prompt(o, 'input')
  const format = o.response_format
  if (typeof format === 'string' && UNENCODABLE_AUDIO.includes(format)) {
    throw badRequest('response_format', `'${format}' cannot be produced: the engine writes WAV; ask for 'wav' or 'pcm'`)
  }
  const responseFormat = optChoice(o, 'response_format', ['wav', 'pcm'] as const) ?? 'wav'
  onlyDefault(o, 'speed', [1], 'only 1.0 is supported (the engine has no speed control)')
  onlyDefault(o, 'stream_format', ['audio'], "only 'audio' is supported (the whole file in the response body)")
  const options: SpeechOptions = {}
  const voice = o.voice
  if (isObject(voice)) {
    if (typeof voice.id !== 'string' || voice.id.length === 0) throw badRequest('voice.id', 'expected a voice id')
    checkKeys(voice, new Set(['id']), 'voice')
    options.speaker = voice.id
  } else if (voice !== undefined && voice !== null) {
    if (typeof voice !== 'string' || voice.length === 0) throw badRequest('voice', 'expected a voice name or { id }')
    options.speaker = voice
  }
  const instructions = optString(o, 'instructions')
  if (instructions) options.modalOptions = { instructions }
  const language = optString(o, 'language')
  if (language !== undefined) options.language = language
  const sampleRate = optNumber(o, 'sample_rate', true)
  if (sampleRate !== undefined) options.sampleRate = sampleRate
  const seed = optNumber(o, 'seed', true)
  if (seed !== undefined) options.seed = seed
  return {
    model: id,
    input,
    options,
    format: responseFormat,
    names: new Map([
      ['speaker', 'voice'],
      ['sampleRate', 'sample_rate'],
      ['modalOptions', 'instructions'],
    ]),
  }
}

// ---------------------------------------------------------------------------------------
// Transcription

const TRANSCRIPTION_FIELDS = new Set(['model', 'file', 'response_format', 'stream'])
/** Fields of OpenAI's transcription that orchard's `transcribe` has no way to pass on. */
const TRANSCRIPTION_UNSUPPORTED = [
  'language',
  'prompt',
  'temperature',
  'include',
  'timestamp_granularities',
  'chunking_strategy',
]

export const TRANSCRIPTION_FORM: FormShape = {
  files: new Set(['file']),
  numbers: new Set(['temperature']),
  booleans: new Set(['stream']),
}

export interface TranscriptionRequest {
  model: string
  file: File
  format: 'json' | 'text'
}

/** A `POST /v1/audio/transcriptions` form (the file is decoded by the route). */
export function mapTranscriptionRequest(o: Json): TranscriptionRequest {
  for (const key of TRANSCRIPTION_UNSUPPORTED) {
    if (o[key] !== undefined) throw badRequest(key, "not supported: orchard's transcription takes only the audio")
  }
  checkKeys(o, TRANSCRIPTION_FIELDS, '')
  const id = model(o)
  const file = o.file
  if (Array.isArray(file)) throw badRequest('file', 'expected one audio file')
  if (!(file instanceof File)) throw badRequest('file', 'expected an audio file upload')
  onlyDefault(o, 'stream', [false], 'streamed transcription is not supported')
  const format = optChoice(o, 'response_format', ['json', 'text', 'verbose_json', 'srt', 'vtt', 'diarized_json'])
  if (format !== undefined && format !== 'json' && format !== 'text') {
    throw badRequest('response_format', `'${format}' is not supported (no timings or segments); use 'json' or 'text'`)
  }
  return { model: id, file, format: format ?? 'json' }
}

// ---------------------------------------------------------------------------------------
// Images

/** Images one request may ask for (OpenAI's own limit). */
export const MAX_IMAGES = 10

/** Accepted and ignored: they have no meaning for a local engine or its models. */
const IMAGE_IGNORED = ['quality', 'style', 'moderation', 'input_fidelity', 'user', 'safety_identifier']

const IMAGE_FIELDS = [
  'model',
  'prompt',
  'n',
  'size',
  'response_format',
  'background',
  'output_format',
  'output_compression',
  'partial_images',
  'stream',
  ...IMAGE_IGNORED,
  // orchard extensions
  'seed',
  'num_steps',
]
const GENERATE_FIELDS = new Set([...IMAGE_FIELDS, 'guidance_scale'])
const EDIT_FIELDS = new Set([...IMAGE_FIELDS, 'image', 'mask', 'true_cfg_scale', 'negative_prompt'])

export const EDIT_FORM: FormShape = {
  files: new Set(['image', 'mask']),
  numbers: new Set(['n', 'output_compression', 'partial_images', 'seed', 'num_steps', 'true_cfg_scale']),
  booleans: new Set(['stream']),
}

export interface ImagesRequest<O> {
  model: string
  prompt: string
  n: number
  /** One call's options; image `i` of `n` is made with seed `seed + i`. */
  options: O
  names: ParamNames
}

const IMAGE_NAMES: ParamNames = new Map([
  ['width', 'size'],
  ['height', 'size'],
  ['numSteps', 'num_steps'],
  ['guidanceScale', 'guidance_scale'],
  ['trueCfgScale', 'true_cfg_scale'],
  ['negativePrompt', 'negative_prompt'],
])

function size(o: Json): { width?: number; height?: number } {
  const v = optString(o, 'size')
  if (v === undefined || v === 'auto') return {}
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(v)
  if (!m) throw badRequest('size', `expected 'WIDTHxHEIGHT' (e.g. '1024x1024') or 'auto'; got '${v}'`)
  return { width: Number(m[1]), height: Number(m[2]) }
}

/** What generation and editing share: `n`, size, formats, seed and steps. */
function imageCommon(o: Json): { n: number; options: ImageGenerateOptions & ImageEditOptions } {
  const n = optNumber(o, 'n', true) ?? 1
  if (n < 1 || n > MAX_IMAGES) throw badRequest('n', `expected 1 to ${MAX_IMAGES}; got ${n}`)
  const format = optChoice(o, 'response_format', ['b64_json', 'url'])
  if (format === 'url')
    throw badRequest('response_format', "'url' is not supported (no files are hosted); use 'b64_json'")
  onlyDefault(o, 'output_format', ['png'], "only 'png' is produced")
  onlyDefault(o, 'output_compression', [], "applies to 'jpeg' and 'webp' only; images are PNG")
  onlyDefault(o, 'background', ['auto', 'opaque'], "only 'auto' or 'opaque' (the images have no alpha channel)")
  onlyDefault(o, 'stream', [false], 'streamed images are not supported')
  onlyDefault(o, 'partial_images', [0], 'partial images need streaming, which is not supported')
  for (const key of IMAGE_IGNORED) optString(o, key)
  const options: ImageGenerateOptions & ImageEditOptions = { ...size(o) }
  const seed = optNumber(o, 'seed', true)
  if (seed !== undefined) options.seed = seed
  const steps = optNumber(o, 'num_steps', true)
  if (steps !== undefined) options.numSteps = steps
  return { n, options }
}

/** A `POST /v1/images/generations` body. */
export function mapImageGenerateRequest(o: Json): ImagesRequest<ImageGenerateOptions> {
  checkKeys(o, GENERATE_FIELDS, '')
  const id = model(o)
  const text = prompt(o, 'prompt')
  const { n, options } = imageCommon(o)
  const guidance = optNumber(o, 'guidance_scale')
  if (guidance !== undefined) options.guidanceScale = guidance
  return { model: id, prompt: text, n, options, names: IMAGE_NAMES }
}

export interface ImageEditRequest extends ImagesRequest<ImageEditOptions> {
  image: File
}

/** A `POST /v1/images/edits` form. */
export function mapImageEditRequest(o: Json): ImageEditRequest {
  checkKeys(o, EDIT_FIELDS, '')
  const id = model(o)
  let image = o.image
  if (Array.isArray(image)) {
    if (image.length !== 1) throw badRequest('image', `${image.length} images; the engine edits one image at a time`)
    image = image[0]
  }
  if (!(image instanceof File)) throw badRequest('image', 'expected an image file upload (PNG, JPEG, GIF or WebP)')
  if (o.mask !== undefined) throw badRequest('mask', 'masks are not supported; the edit applies to the whole image')
  const text = prompt(o, 'prompt')
  const { n, options } = imageCommon(o)
  const cfg = optNumber(o, 'true_cfg_scale')
  if (cfg !== undefined) options.trueCfgScale = cfg
  const negative = optString(o, 'negative_prompt')
  if (negative !== undefined) options.negativePrompt = negative
  return { model: id, prompt: text, image, n, options, names: IMAGE_NAMES }
}
