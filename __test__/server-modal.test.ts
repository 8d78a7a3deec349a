// orchard-ts/server's audio and image routes driven by the official `openai` client against the
// emulator over HTTP: speech (WAV, PCM), transcription of uploaded WAVs, image generation and
// editing, the 400s naming their field, 404s and cancellation.
import type OpenAI from 'openai'
import { toFile } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import type { Client, Engine } from '../src-ts'
import type { OrchardServer } from '../src-ts/server'
import { resample } from '../src-ts/server/wav'
import { useEmulator } from './helpers'
import { statsWhen, until } from './pipeline-fixtures'
import { serveOpenAI, apiError as status } from './server-fixtures'

let engine: Engine
let client: Client
let model: string

useEmulator('server-modal', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '5' } }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
})

let server: OrchardServer
let baseURL: string
let openai: OpenAI

beforeAll(async () => {
  ;({ server, baseURL, openai } = await serveOpenAI({ engine, models: [model] }))
})

afterAll(async () => {
  await server?.close({ graceMs: 1_000 })
})

/** A 400 whose error object names `param`. */
async function badParam(p: Promise<unknown>, param: string): Promise<string> {
  const err = await status(p)
  expect(err.status).toBe(400)
  expect(err.error).toMatchObject({ type: 'invalid_request_error', param })
  return err.message
}

/** A WAV file of `channels` interleaved channels: 16-bit PCM, or float32 when `float`. */
function wavBytes(samples: Float32Array, rate: number, channels = 1, float = false): Buffer {
  const width = float ? 4 : 2
  const data = Buffer.alloc(samples.length * width)
  for (const [i, s] of samples.entries()) {
    if (float) data.writeFloatLE(s, i * 4)
    else data.writeInt16LE(Math.round(s * 32767), i * 2)
  }
  const head = Buffer.alloc(44)
  head.write('RIFF', 0, 'latin1')
  head.writeUInt32LE(36 + data.length, 4)
  head.write('WAVEfmt ', 8, 'latin1')
  head.writeUInt32LE(16, 16)
  head.writeUInt16LE(float ? 3 : 1, 20)
  head.writeUInt16LE(channels, 22)
  head.writeUInt32LE(rate, 24)
  head.writeUInt32LE(rate * channels * width, 28)
  head.writeUInt16LE(channels * width, 32)
  head.writeUInt16LE(width * 8, 34)
  head.write('data', 36, 'latin1')
  head.writeUInt32LE(data.length, 40)
  return Buffer.concat([head, data])
}

const tone = (n: number, rate: number, hz = 440) =>
  new Float32Array(n).map((_, i) => 0.5 * Math.sin((2 * Math.PI * hz * i) / rate))

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

/** A PNG's width and height (from its IHDR chunk), after checking its signature. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect(png.subarray(0, 8)).toEqual(PNG_SIGNATURE)
  expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR')
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
}

describe('POST /v1/audio/speech', () => {
  it('answers the WAV client.audio.speech gives for the same input, voice and seed', async () => {
    const { data, response } = await openai.audio.speech
      .create({ model, input: 'Apples are ripe in the orchard', voice: 'alloy', seed: 3 } as never)
      .withResponse()
    expect(data.headers.get('content-type')).toBe('audio/wav')
    expect(Number(response.headers.get('x-request-id'))).toBeGreaterThan(0)
    const wav = Buffer.from(await data.arrayBuffer())
    const [expected] = await client.audio.speech(model, 'Apples are ripe in the orchard', { speaker: 'alloy', seed: 3 })
    expect(wav.equals(Buffer.from(expected!.data))).toBe(true)
    expect(wav.subarray(0, 4).toString('latin1')).toBe('RIFF')
    // `response_format: 'wav'` is the same; the voice may be given as `{ id }`.
    const explicit = await openai.audio.speech.create({
      model,
      input: 'Apples are ripe in the orchard',
      voice: { id: 'alloy' },
      response_format: 'wav',
      seed: 3,
    } as never)
    expect(Buffer.from(await explicit.arrayBuffer()).equals(wav)).toBe(true)
  })

  it('joins speech the engine streams in pieces (one WAV a sentence) into one WAV, pcm too', async () => {
    const input = 'Apples are ripe. Pears come later! Plums, too?'
    const pieces = await client.audio.speech(model, input, { speaker: 'alloy', seed: 3 })
    expect(pieces.map((a) => a.event)).toEqual(['artifact.delta', 'artifact.delta', 'artifact.done'])
    const samples = Buffer.concat(pieces.map((a) => Buffer.from(a.data).subarray(44)))
    const wav = Buffer.from(
      await (await openai.audio.speech.create({ model, input, voice: 'alloy', seed: 3 } as never)).arrayBuffer(),
    )
    expect(wav.subarray(0, 4).toString('latin1')).toBe('RIFF')
    expect(wav.readUInt32LE(40)).toBe(samples.length)
    expect(wav.subarray(44).equals(samples)).toBe(true)
    expect(wav.subarray(0, 36).subarray(20).equals(Buffer.from(pieces[0]!.data).subarray(20, 36))).toBe(true)
    const pcm = await openai.audio.speech.create({
      model,
      input,
      voice: 'alloy',
      seed: 3,
      response_format: 'pcm',
    } as never)
    expect(Buffer.from(await pcm.arrayBuffer()).equals(samples)).toBe(true)
  })

  it("response_format 'pcm' is the WAV's 16-bit samples; sample_rate is passed on", async () => {
    const pcm = await openai.audio.speech.create({ model, input: 'Hello there', voice: 'ash', response_format: 'pcm' })
    expect(pcm.headers.get('content-type')).toBe('audio/pcm')
    expect(pcm.headers.get('x-sample-rate')).toBe('24000')
    const [expected] = await client.audio.speech(model, 'Hello there', { speaker: 'ash' })
    const wav = Buffer.from(expected!.data)
    expect(wav.readUInt16LE(34)).toBe(16)
    expect(Buffer.from(await pcm.arrayBuffer()).equals(wav.subarray(44))).toBe(true)
    const slow = await openai.audio.speech.create({
      model,
      input: 'Hello there',
      voice: 'ash',
      sample_rate: 16_000,
    } as never)
    expect(Buffer.from(await slow.arrayBuffer()).readUInt32LE(24)).toBe(16_000)
  })

  it('400s name the field: formats it cannot make, speed, sse, unknown fields, empty input', async () => {
    const base = { model, input: 'hi', voice: 'alloy' }
    expect(await badParam(openai.audio.speech.create({ ...base, response_format: 'mp3' }), 'response_format')).toMatch(
      /'mp3' cannot be produced.*'wav' or 'pcm'/,
    )
    await badParam(openai.audio.speech.create({ ...base, response_format: 'ogg' } as never), 'response_format')
    await badParam(openai.audio.speech.create({ ...base, speed: 2 }), 'speed')
    await badParam(openai.audio.speech.create({ ...base, stream_format: 'sse' }), 'stream_format')
    await badParam(openai.audio.speech.create({ ...base, volume: 3 } as never), 'volume')
    await badParam(openai.audio.speech.create({ ...base, input: '' }), 'input')
    await badParam(openai.audio.speech.create({ ...base, voice: {} } as never), 'voice.id')
    // orchard's core checks the range and the message is renamed to the field.
    await badParam(openai.audio.speech.create({ ...base, sample_rate: 0 } as never), 'sample_rate')
    // `speed: 1` asks for nothing and is accepted.
    expect((await openai.audio.speech.create({ ...base, speed: 1 })).status).toBe(200)
  })

  it('a client that goes away cancels the engine request', async () => {
    // The request id is sent with the answer; the engine client numbers requests in order, so
    // the cancelled one is the one after this.
    const before = await openai.audio.speech.create({ model, input: 'hi', voice: 'alloy' }).withResponse()
    const requestId = Number(before.response.headers.get('x-request-id')) + 1
    const controller = new AbortController()
    const pending = openai.audio.speech.create(
      { model, input: 'Apple trees blossom in the orchard every spring. '.repeat(600), voice: 'alloy' },
      { signal: controller.signal },
    )
    await until(() => server.inFlight > 0)
    controller.abort()
    await expect(pending).rejects.toThrow()
    await until(() => server.inFlight === 0)
    const s = await statsWhen(engine, requestId, (x) => x.cancelled && x.active_sequences === 0)
    // The audio was never published: the engine stopped the request.
    expect(s.published_deltas).toBe(1)
  })
})

describe('POST /v1/audio/transcriptions', () => {
  it('transcribes a 16 kHz WAV to the text client.audio.transcribe gives for its samples', async () => {
    const samples = tone(16_000, 16_000)
    const file = await toFile(wavBytes(samples, 16_000), 'tone.wav', { type: 'audio/wav' })
    const { data, response } = await openai.audio.transcriptions.create({ model, file }).withResponse()
    const pcm16 = samples.map((s) => Math.round(s * 32767) / 32768)
    const expected = await client.audio.transcribe(model, pcm16)
    expect(expected).toBe('I heard 1000 milliseconds of audio about apples.')
    expect(data.text).toBe(expected)
    expect(data.usage).toEqual({ type: 'duration', seconds: 1 })
    expect(Number(response.headers.get('x-request-id'))).toBeGreaterThan(0)
    const text = await openai.audio.transcriptions.create({ model, file, response_format: 'text' })
    expect(text).toBe(expected)
  })

  it('takes other rates, channel counts and float samples, resampled to 16 kHz mono', async () => {
    // Half a second of stereo float32 at 48 kHz.
    const stereo = tone(48_000, 48_000).map((s, i) => (i % 2 === 0 ? s : -s / 2))
    const file = await toFile(wavBytes(stereo, 48_000, 2, true), 'stereo.wav')
    const r = await openai.audio.transcriptions.create({ model, file })
    expect(r.text).toBe('I heard 500 milliseconds of audio about apples.')
    expect(r.usage).toEqual({ type: 'duration', seconds: 0.5 })
    // Other chunks (an odd-sized LIST, padded) may come before the data.
    const plain = wavBytes(tone(8000, 16_000), 16_000)
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc\0')])
    const withList = Buffer.concat([plain.subarray(0, 36), list, plain.subarray(36)])
    withList.writeUInt32LE(withList.length - 8, 4)
    const listed = await openai.audio.transcriptions.create({ model, file: await toFile(withList, 'list.wav') })
    expect(listed.text).toBe('I heard 500 milliseconds of audio about apples.')
    // Non-finite float samples are silence, not an error.
    const poisoned = tone(8000, 16_000)
    poisoned[5] = Number.NaN
    poisoned[6] = Number.POSITIVE_INFINITY
    const nan = await toFile(wavBytes(poisoned, 16_000, 1, true), 'nan.wav')
    expect((await openai.audio.transcriptions.create({ model, file: nan })).text).toBe(
      'I heard 500 milliseconds of audio about apples.',
    )
    const eight = await toFile(wavBytes(tone(4000, 8000), 8000), 'eight.wav')
    expect((await openai.audio.transcriptions.create({ model, file: eight })).text).toBe(
      'I heard 500 milliseconds of audio about apples.',
    )
  })

  it('resampling keeps a tone a tone', () => {
    const rate = 48_000
    const down = resample(tone(rate, rate, 1000), rate, 16_000)
    expect(down.length).toBe(16_000)
    const want = tone(16_000, 16_000, 1000)
    // Away from the edges the filter's output is the same tone sampled at 16 kHz.
    const err = Math.max(...down.subarray(100, 15_900).map((s, i) => Math.abs(s - want[i + 100]!)))
    expect(err).toBeLessThan(0.01)
    const up = resample(tone(8000, 8000, 1000), 8000, 16_000)
    expect(up.length).toBe(16_000)
    const upErr = Math.max(...up.subarray(100, 15_900).map((s, i) => Math.abs(s - want[i + 100]!)))
    expect(upErr).toBeLessThan(0.01)
  })

  it('400s name the field: not a WAV, unsupported options and formats; 404 for an unknown model', async () => {
    const wav = await toFile(wavBytes(tone(1600, 16_000), 16_000), 'a.wav')
    const mp3 = await toFile(Buffer.from('ID3\x03\x00 not really an mp3'), 'song.mp3', { type: 'audio/mpeg' })
    expect(await badParam(openai.audio.transcriptions.create({ model, file: mp3 }), 'file')).toMatch(
      /'song\.mp3', audio\/mpeg is not a WAV file; accepted: WAV/,
    )
    const broken = Buffer.from(wavBytes(tone(16, 16_000), 16_000))
    broken.writeUInt16LE(7, 20)
    expect(
      await badParam(openai.audio.transcriptions.create({ model, file: await toFile(broken, 'b.wav') }), 'file'),
    ).toMatch(/unsupported sample format \(code 7/)
    await badParam(openai.audio.transcriptions.create({ model, file: wav, language: 'en' }), 'language')
    await badParam(openai.audio.transcriptions.create({ model, file: wav, response_format: 'srt' }), 'response_format')
    await badParam(openai.audio.transcriptions.create({ model, file: wav, mood: 'calm' } as never), 'mood')
    // Over 20 minutes (here at 1 kHz, a small upload) is refused before any decoding.
    const long = await toFile(wavBytes(new Float32Array(1_201_000), 1000), 'long.wav')
    expect(await badParam(openai.audio.transcriptions.create({ model, file: long }), 'file')).toMatch(
      /the audio is 1201 s long; at most 1200 s per request/,
    )
    // A field named __proto__ is an unknown field like any other.
    const form = new FormData()
    form.append('model', model)
    form.append('file', new Blob([wavBytes(tone(1600, 16_000), 16_000)]), 'a.wav')
    form.append('__proto__', 'x')
    const proto = await fetch(`${baseURL}/audio/transcriptions`, { method: 'POST', body: form })
    expect(proto.status).toBe(400)
    expect(((await proto.json()) as { error: { param: string } }).error.param).toBe('__proto__')
    const unknown = await status(openai.audio.transcriptions.create({ model: 'org/unknown', file: wav }))
    expect(unknown.status).toBe(404)
    expect(unknown.error).toMatchObject({ param: 'model', code: 'model_not_found' })
    const json = await fetch(`${baseURL}/audio/transcriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model }),
    })
    expect(json.status).toBe(400)
    expect(((await json.json()) as { error: { param: string } }).error.param).toBe('body')
  })

  it('an upload over bodyLimit is a 413', async () => {
    const { server: small, openai: o } = await serveOpenAI({ engine, models: [model], bodyLimit: 4096 })
    try {
      const file = await toFile(wavBytes(tone(16_000, 16_000), 16_000), 'long.wav')
      const err = await status(o.audio.transcriptions.create({ model, file }))
      expect(err.status).toBe(413)
      expect(err.error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' })
      const short = await toFile(wavBytes(tone(800, 16_000), 16_000), 'short.wav')
      expect((await o.audio.transcriptions.create({ model, file: short })).text).toBe(
        'I heard 50 milliseconds of audio about apples.',
      )
    } finally {
      await small.close({ graceMs: 1_000 })
    }
  })
})

describe('POST /v1/images/generations', () => {
  it('answers b64 PNGs equal to client.images.generate, n of them (image i with seed + i)', async () => {
    const { data: r, response } = await openai.images
      .generate({ model, prompt: 'a red apple', size: '512x256', n: 2, seed: 4 } as never)
      .withResponse()
    expect(r.created).toBeGreaterThan(0)
    expect(r.output_format).toBe('png')
    expect(r.data).toHaveLength(2)
    expect(response.headers.get('x-request-id')).toMatch(/^\d+,\d+$/)
    expect(r.data![0]!.b64_json).not.toBe(r.data![1]!.b64_json)
    for (const [i, image] of r.data!.entries()) {
      const png = Buffer.from(image.b64_json!, 'base64')
      expect(pngSize(png)).toEqual({ width: 64, height: 32 })
      const [expected] = await client.images.generate(model, 'a red apple', { width: 512, height: 256, seed: 4 + i })
      expect(png.equals(Buffer.from(expected!.data))).toBe(true)
    }
    // Many steps: the engine sends previews (artifact.delta) before the image; only the image is answered.
    const streamed = await client.images.generate(model, 'a red apple', { numSteps: 130, seed: 4 })
    expect(streamed.map((a) => a.event)).toEqual(['artifact.delta', 'artifact.delta', 'artifact.done'])
    const final = await openai.images.generate({ model, prompt: 'a red apple', num_steps: 130, seed: 4 } as never)
    expect(final.data).toHaveLength(1)
    expect(Buffer.from(final.data![0]!.b64_json!, 'base64').equals(Buffer.from(streamed[2]!.data))).toBe(true)
    const one = await openai.images.generate({ model, prompt: 'a green pear', response_format: 'b64_json' })
    expect(one.data).toHaveLength(1)
    expect(pngSize(Buffer.from(one.data![0]!.b64_json!, 'base64'))).toEqual({ width: 64, height: 64 })
  })

  it('400s name the field: size, response_format, prompt, n, output_format; 404 for an unknown model', async () => {
    const base = { model, prompt: 'an orchard' }
    expect(await badParam(openai.images.generate({ ...base, size: 'large' }), 'size')).toMatch(/WIDTHxHEIGHT/)
    await badParam(openai.images.generate({ ...base, size: '0x16' }), 'size')
    expect(await badParam(openai.images.generate({ ...base, response_format: 'url' }), 'response_format')).toMatch(
      /'url' is not supported.*'b64_json'/,
    )
    await badParam(openai.images.generate({ model } as never), 'prompt')
    await badParam(openai.images.generate({ ...base, n: 11 }), 'n')
    await badParam(openai.images.generate({ ...base, n: 0 }), 'n')
    await badParam(openai.images.generate({ ...base, output_format: 'jpeg' }), 'output_format')
    await badParam(openai.images.generate({ ...base, background: 'transparent' }), 'background')
    await badParam(openai.images.generate({ ...base, stream: true }), 'stream')
    await badParam(openai.images.generate({ ...base, frame_count: 2 } as never), 'frame_count')
    await badParam(openai.images.generate({ prompt: 'x' }), 'model')
    // One of n calls refused by the SDK (seed -1 for the first, 0 for the second): a 400, the
    // other call stopped, and no rejection left unhandled (vitest fails the run on one).
    await badParam(openai.images.generate({ ...base, n: 2, seed: -1 } as never), 'seed')
    // Quality and style mean nothing here and are accepted.
    expect((await openai.images.generate({ ...base, quality: 'high', style: 'vivid' })).data).toHaveLength(1)
    const unknown = await status(openai.images.generate({ ...base, model: 'org/unknown' }))
    expect(unknown.status).toBe(404)
    expect(unknown.error).toMatchObject({ param: 'model', code: 'model_not_found' })
  })
})

describe('POST /v1/images/edits', () => {
  it('edits an uploaded PNG as client.images.edit does', async () => {
    const [source] = await client.images.generate(model, 'an orchard', { width: 32, height: 32 })
    const png = Buffer.from(source!.data)
    const image = await toFile(png, 'orchard.png', { type: 'image/png' })
    const r = await openai.images.edit({ model, image, prompt: 'swap the colours', n: 2, true_cfg_scale: 3 } as never)
    expect(r.data).toHaveLength(2)
    const [expected] = await client.images.edit(model, png, 'swap the colours', { trueCfgScale: 3 })
    const edited = Buffer.from(r.data![0]!.b64_json!, 'base64')
    pngSize(edited)
    expect(edited.equals(Buffer.from(expected!.data))).toBe(true)
    // One image as a one-element array (sent as `image[]`) is the same.
    const listed = await openai.images.edit({
      model,
      image: [image],
      prompt: 'swap the colours',
      true_cfg_scale: 3,
    } as never)
    expect(Buffer.from(listed.data![0]!.b64_json!, 'base64').equals(edited)).toBe(true)
  })

  it('400s name the field: not an image, several images, a mask, no prompt, bad size', async () => {
    const png = Buffer.from((await client.images.generate(model, 'x', { width: 16, height: 16 }))[0]!.data)
    const image = await toFile(png, 'a.png', { type: 'image/png' })
    const text = await toFile(Buffer.from('not a picture'), 'a.txt', { type: 'text/plain' })
    expect(await badParam(openai.images.edit({ model, image: text, prompt: 'x' }), 'image')).toMatch(/not a PNG/)
    expect(await badParam(openai.images.edit({ model, image: [image, image], prompt: 'x' }), 'image')).toMatch(
      /one image at a time/,
    )
    await badParam(openai.images.edit({ model, image, mask: image, prompt: 'x' }), 'mask')
    await badParam(openai.images.edit({ model, image, prompt: '' }), 'prompt')
    await badParam(openai.images.edit({ model, image, prompt: 'x', size: '12' }), 'size')
    await badParam(openai.images.edit({ model, image, prompt: 'x', n: 'two' } as never), 'n')
    const unknown = await status(openai.images.edit({ model: 'org/unknown', image, prompt: 'x' }))
    expect(unknown.status).toBe(404)
  })
})
