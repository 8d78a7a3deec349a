/**
 * The audio and image routes: `POST /v1/audio/speech`, `/v1/audio/transcriptions`,
 * `/v1/images/generations` and `/v1/images/edits`, over `client.audio` and `client.images`.
 */

import type { Context, Hono } from 'hono'

import type { Engine } from '../engine'
import type { ModalArtifact } from '../modal'
import type { RequestPromise } from '../tasks/request'
import { badRequest, HttpError, type ParamNames, toHttpError } from './errors'
import { body, type FormShape, formBody, type Json } from './fields'
import {
  EDIT_FORM,
  type ImagesRequest,
  mapImageEditRequest,
  mapImageGenerateRequest,
  mapSpeechRequest,
  mapTranscriptionRequest,
  TRANSCRIPTION_FORM,
} from './modal-mapping'
import { frameCount, isWav, monoSamples, parseWav, pcm16, resample, type Wav, WavFormatError, wavFile } from './wav'

/** The rate orchard's speech-to-text models take their PCM at. */
export const TRANSCRIPTION_SAMPLE_RATE = 16_000

/**
 * The longest audio one transcription request takes (20 minutes): decoding and resampling
 * run on the server's thread, and a long low-rate upload would otherwise hold it for seconds
 * and expand to gigabytes of samples.
 */
export const MAX_TRANSCRIPTION_SECONDS = 1_200

/** What the routes need from the server that mounts them. */
export interface RouteContext {
  engine: Engine
  /** Throw the 404 for a model that is not served. */
  checkModel(model: string): void
  /** Make the request in flight, with an abort signal tied to the client's connection. */
  begin(c: Context): { controller: AbortController; end: () => void }
  json(c: Context): Promise<unknown>
  requestIdHeader: string
}

/** The artifacts of one kind (`type` null: unlabelled), in the order they came. */
function ofType(artifacts: ModalArtifact[], type: string): ModalArtifact[] {
  return artifacts.filter((a) => a.type === null || a.type === type)
}

/** The finished artifacts: `artifact.done` ones (all of them when none is marked done); earlier ones are previews. */
function finished(artifacts: ModalArtifact[], type: string): ModalArtifact[] {
  const typed = ofType(artifacts, type)
  const done = typed.filter((a) => a.event === 'artifact.done')
  return done.length > 0 ? done : typed
}

/**
 * The engine's speech as one WAV file. Speech streams in pieces (`artifact.delta` for each but
 * the last, which is `artifact.done`), each a WAV of the next stretch of audio: they are joined.
 */
function speechWav(artifacts: ModalArtifact[]): { wav: Wav; file: Uint8Array } {
  const files = ofType(artifacts, 'audio').map((a) => a.data)
  const pieces = files.map(parseWav)
  const first = pieces[0]
  if (first === undefined) throw new HttpError(500, 'The engine returned no audio', { code: 'no_output' })
  if (pieces.length === 1) return { wav: first, file: files[0]! }
  const same = (w: Wav) =>
    w.sampleRate === first.sampleRate &&
    w.channels === first.channels &&
    w.bits === first.bits &&
    w.encoding === first.encoding
  if (!pieces.every(same)) throw new HttpError(500, 'The engine returned audio pieces of different formats')
  const wav = { ...first, data: Buffer.concat(pieces.map((w) => w.data)) }
  return { wav, file: wavFile(wav, wav.data) }
}

export function modalRoutes(app: Hono, ctx: RouteContext): void {
  const { engine } = ctx

  async function form(c: Context, shape: FormShape): Promise<Json> {
    const type = c.req.header('content-type') ?? ''
    if (!/^multipart\/form-data\b/i.test(type)) {
      throw badRequest('body', `expected multipart/form-data; got ${type ? `'${type}'` : 'no Content-Type'}`)
    }
    let data: FormData
    try {
      data = await c.req.formData()
    } catch (e) {
      throw badRequest('body', `not a readable multipart form (${e instanceof Error ? e.message : String(e)})`)
    }
    return formBody(data, shape)
  }

  /** Run `work` in flight for `model`; its errors become OpenAI errors naming the request's fields. */
  async function run(
    c: Context,
    model: string,
    names: ParamNames,
    work: (signal: AbortSignal, ids: (calls: Array<RequestPromise<unknown>>) => Promise<void>) => Promise<Response>,
  ): Promise<Response> {
    ctx.checkModel(model)
    const { controller, end } = ctx.begin(c)
    const ids = async (calls: Array<RequestPromise<unknown>>) => {
      c.header(ctx.requestIdHeader, (await Promise.all(calls.map((p) => p.requestId()))).join(','))
    }
    try {
      return await work(controller.signal, ids)
    } catch (e) {
      // One of several calls failed: stop the others in the engine.
      controller.abort(e)
      throw toHttpError(e, names)
    } finally {
      end()
    }
  }

  app.post('/v1/audio/speech', async (c) => {
    const req = mapSpeechRequest(body(await ctx.json(c)))
    return run(c, req.model, req.names, async (signal, ids) => {
      const call = engine.client().audio.speech(req.model, req.input, { ...req.options, signal, stream: false })
      await ids([call])
      const { wav, file } = speechWav(await call)
      if (req.format === 'pcm') {
        return c.body(new Uint8Array(pcm16(wav)), 200, {
          'Content-Type': 'audio/pcm',
          'X-Sample-Rate': String(wav.sampleRate),
        })
      }
      return c.body(new Uint8Array(file), 200, { 'Content-Type': 'audio/wav' })
    })
  })

  app.post('/v1/audio/transcriptions', async (c) => {
    const req = mapTranscriptionRequest(await form(c, TRANSCRIPTION_FORM))
    ctx.checkModel(req.model)
    const bytes = new Uint8Array(await req.file.arrayBuffer())
    const accepted = 'accepted: WAV (PCM 8/16/24/32-bit or float 32/64-bit, any sample rate and channel count)'
    if (!isWav(bytes)) {
      const type = req.file.type ? `, ${req.file.type}` : ''
      throw badRequest('file', `'${req.file.name}'${type} is not a WAV file; ${accepted}`)
    }
    let wav: Wav
    try {
      wav = parseWav(bytes)
    } catch (e) {
      if (e instanceof WavFormatError) throw badRequest('file', `${e.message}; ${accepted}`)
      throw e
    }
    const seconds = frameCount(wav) / wav.sampleRate
    if (seconds > MAX_TRANSCRIPTION_SECONDS) {
      throw badRequest(
        'file',
        `the audio is ${Math.round(seconds)} s long; at most ${MAX_TRANSCRIPTION_SECONDS} s per request (split it)`,
      )
    }
    const samples = monoSamples(wav)
    const pcm = resample(samples, wav.sampleRate, TRANSCRIPTION_SAMPLE_RATE)
    return run(c, req.model, new Map(), async (signal, ids) => {
      const call = engine.client().audio.transcribe(req.model, pcm, { signal })
      await ids([call])
      const text = await call
      if (req.format === 'text') return c.text(text)
      const seconds = Math.round((samples.length / wav.sampleRate) * 1000) / 1000
      return c.json({ text, usage: { type: 'duration', seconds } })
    })
  })

  /** Make `req.n` images with `call` (image `i` with seed `seed + i`) and answer OpenAI's way. */
  function images<O extends { seed?: number; signal?: AbortSignal }>(
    c: Context,
    req: ImagesRequest<O>,
    call: (options: O) => RequestPromise<ModalArtifact[]>,
  ): Promise<Response> {
    return run(c, req.model, req.names, async (signal, ids) => {
      const calls = Array.from({ length: req.n }, (_, i) =>
        call({ ...req.options, signal, ...(i > 0 ? { seed: (req.options.seed ?? 0) + i } : {}) }),
      )
      // When one call fails the others are aborted (below); nothing else awaits them then.
      for (const p of calls) p.catch(() => undefined)
      await ids(calls)
      const results = await Promise.all(calls)
      const data = results.flatMap((r) => {
        const made = finished(r, 'image')
        if (made.length === 0) throw new HttpError(500, 'The engine returned no image', { code: 'no_output' })
        return made.map((a) => ({ b64_json: Buffer.from(a.data).toString('base64') }))
      })
      return c.json({ created: Math.floor(Date.now() / 1000), data, output_format: 'png' })
    })
  }

  app.post('/v1/images/generations', async (c) => {
    const req = mapImageGenerateRequest(body(await ctx.json(c)))
    return images(c, req, (options) =>
      engine.client().images.generate(req.model, req.prompt, { ...options, stream: false }),
    )
  })

  app.post('/v1/images/edits', async (c) => {
    const req = mapImageEditRequest(await form(c, EDIT_FORM))
    const image = new Uint8Array(await req.image.arrayBuffer())
    return images(c, req, (options) =>
      engine.client().images.edit(req.model, image, req.prompt, { ...options, stream: false }),
    )
  })
}
