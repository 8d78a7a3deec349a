// Modal facades end to end: client.audio and client.images over real IPC to the emulator.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'

import { describe, expect, it } from 'vitest'

import type { Client, Engine, ModalArtifact } from '../src-ts'
import { AbortError, EngineError, InvalidRequestError, ModalStream, ModelNotLoadedError } from '../src-ts'
import { useEmulator } from './helpers'
import { type RequestStats, rejection, settledStats, statsWhen } from './pipeline-fixtures'

let engine: Engine
let client: Client
let model: string
let cacheRoot: string

useEmulator('modal', { env: { PIE_EMULATOR_TOKEN_DELAY_MS: '5' } }, (e) => {
  engine = e.engine
  client = e.client
  model = e.model
  cacheRoot = e.cacheRoot
})

/** Poll the emulator's counters for a request until `done` holds for them. */
const until = (requestId: number, done: (s: RequestStats) => boolean): Promise<RequestStats> =>
  statsWhen(engine, requestId, done)

/** CRC-32 (IEEE), as PNG chunks use it. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff
  for (const b of bytes) {
    c ^= b
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1
  }
  return (c ^ 0xffffffff) >>> 0
}

/** The chunks of a PNG, each checked against its CRC. */
function pngChunks(data: Uint8Array): Array<{ kind: string; body: Buffer }> {
  const b = Buffer.from(data)
  expect(b.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  const chunks: Array<{ kind: string; body: Buffer }> = []
  for (let at = 8; at < b.length; ) {
    const len = b.readUInt32BE(at)
    const kind = b.subarray(at + 4, at + 8).toString('latin1')
    const body = b.subarray(at + 8, at + 8 + len)
    expect(b.readUInt32BE(at + 8 + len)).toBe(crc32(b.subarray(at + 4, at + 8 + len)))
    chunks.push({ kind, body })
    at += 12 + len
  }
  return chunks
}

function checkPng(a: ModalArtifact, event = 'artifact.done'): { width: number; height: number } {
  expect(a.mimeType).toBe('image/png')
  expect(a.type).toBe('image')
  expect(a.event).toBe(event)
  const chunks = pngChunks(a.data)
  expect(chunks.map((c) => c.kind)).toEqual(['IHDR', 'IDAT', 'IEND'])
  const width = chunks[0]!.body.readUInt32BE(0)
  const height = chunks[0]!.body.readUInt32BE(4)
  const pixels = zlib.inflateSync(chunks[1]!.body)
  expect(pixels.length).toBe(height * (1 + 3 * width))
  expect(a.metadata).toMatchObject({ width, height })
  return { width, height }
}

/** A 16-bit mono PCM WAV whose header agrees with its length and its metadata; its sample count. */
function checkWav(a: ModalArtifact, rate = 24_000): number {
  expect([a.type, a.mimeType, a.decoderId]).toEqual(['audio', 'audio/wav', 'tts'])
  const b = Buffer.from(a.data)
  expect([b.subarray(0, 4).toString('latin1'), b.subarray(8, 16).toString('latin1')]).toEqual(['RIFF', 'WAVEfmt '])
  expect(b.readUInt32LE(4)).toBe(b.length - 8)
  expect([b.readUInt16LE(22), b.readUInt32LE(24), b.readUInt16LE(34)]).toEqual([1, rate, 16])
  expect(b.readUInt32LE(40)).toBe(b.length - 44)
  const samples = (b.length - 44) / 2
  expect(a.metadata).toMatchObject({ sample_rate: rate, duration_ms: (samples * 1000) / rate })
  return samples
}

const bytesOf = (list: ModalArtifact[]): Buffer[] => list.map((a) => Buffer.from(a.data))

describe('client.audio', () => {
  it('speaks text: one WAV artifact with its metadata, from one request', async () => {
    const p = client.audio.speech(model, 'Apples are ripe in the orchard')
    const requestId = await p.requestId()
    const [wav, ...rest] = await p
    expect(rest).toHaveLength(0)
    expect(wav!.mimeType).toBe('audio/wav')
    expect(wav!.type).toBe('audio')
    expect(wav!.decoderId).toBe('tts')
    const b = Buffer.from(wav!.data)
    expect(b.subarray(0, 4).toString('latin1')).toBe('RIFF')
    expect(b.subarray(8, 12).toString('latin1')).toBe('WAVE')
    expect(b.readUInt32LE(4)).toBe(b.length - 8)
    expect(b.readUInt32LE(24)).toBe(24_000)
    expect(b.readUInt32LE(40)).toBe(b.length - 44)
    expect(wav!.event).toBe('artifact.done')
    expect(wav!.metadata).toEqual({
      sample_rate: 24_000,
      channels: 1,
      duration_ms: 120,
      start_ms: 0,
      segment: 0,
      reference_audio: false,
    })
    const s = await settledStats(engine, requestId)
    expect(s.published_deltas).toBe(2)
    // `generate` is the same call.
    const again = await client.audio.generate(model, 'Apples are ripe in the orchard')
    expect(Buffer.from(again[0]!.data).equals(b)).toBe(true)
  })

  it('sends the sample rate, reference audio (bytes or path) and extra options', async () => {
    const voice = path.join(cacheRoot, 'voice.wav')
    writeFileSync(voice, Buffer.from('RIFF0000WAVE'))
    for (const referenceAudio of [Buffer.from('RIFF0000WAVE'), voice]) {
      const [wav] = await client.audio.speech(model, 'Hello there', {
        sampleRate: 16_000,
        referenceAudio,
        language: 'en',
        seed: 3,
        modalOptions: { style: 'calm' },
      })
      expect(wav!.metadata).toMatchObject({ sample_rate: 16_000, reference_audio: true })
      expect(Buffer.from(wav!.data).readUInt32LE(24)).toBe(16_000)
    }
  })

  it('rejects bad input with typed errors', async () => {
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => client.audio.speech(model, ''), /^text: /],
      [() => client.audio.speech(model, 'hi', { volume: 3 } as never), /^options\.volume: unknown key/],
      [() => client.audio.speech(model, 'hi', { sampleRate: 0 }), /^options\.sampleRate: /],
      [
        () => client.audio.speech(model, 'hi', { referenceAudio: path.join(cacheRoot, 'nope.wav') }),
        /^options\.referenceAudio: cannot read/,
      ],
      [() => client.audio.transcribe(model, ['a'] as never), /^pcm: /],
      [() => client.audio.transcribe(model, [0], { temperature: 1 } as never), /^options\.temperature: unknown key/],
      [() => client.audio.speech('', 'hi'), /^model: /],
    ]
    for (const [call, message] of cases) {
      const err = await rejection(call())
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.message).toMatch(message)
    }
    // The engine's own refusal arrives as an error delta.
    const engineErr = await rejection(client.audio.speech(model, 'hi', { sampleRate: 1 }))
    expect(engineErr).toBeInstanceOf(EngineError)
    expect(engineErr.message).toContain('sample_rate 1 is out of range')
    expect(await rejection(client.audio.speech('/nowhere/tts', 'hi'))).toBeInstanceOf(ModelNotLoadedError)
  })

  it('transcribes float32 PCM (a Float32Array or numbers) to text', async () => {
    const second = new Float32Array(16_000).map((_, i) => Math.sin(i / 10))
    expect(await client.audio.transcribe(model, second)).toBe('I heard 1000 milliseconds of audio about apples.')
    expect(await client.audio.transcribe(model, Array.from(second.subarray(0, 8000)))).toBe(
      'I heard 500 milliseconds of audio about apples.',
    )
    expect(await client.audio.transcribe(model, new Float32Array(0))).toBe('')
  })

  it('cancels in the engine when the signal aborts', async () => {
    const controller = new AbortController()
    const p = client.audio.speech(model, 'Apple trees blossom in the orchard every spring. '.repeat(300), {
      signal: controller.signal,
    })
    const requestId = await p.requestId()
    controller.abort()
    expect(await rejection(p)).toBeInstanceOf(AbortError)
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    expect(s.published_deltas).toBe(1)
    const early = new AbortController()
    early.abort()
    expect(await rejection(client.images.generate(model, 'x', { signal: early.signal }))).toBeInstanceOf(AbortError)
  })
})

describe('client.images', () => {
  it('generates a valid PNG, scaled from the requested size', async () => {
    const [img] = await client.images.generate(model, 'a red apple', { width: 512, height: 256, numSteps: 4 })
    expect(img!.decoderId).toBe('flux')
    expect(checkPng(img!)).toEqual({ width: 64, height: 32 })
    expect(img!.metadata).toMatchObject({ requested_width: 512, requested_height: 256 })
    const same = await client.images.generate(model, 'a red apple', { width: 512, height: 256 })
    expect(Buffer.from(same[0]!.data).equals(Buffer.from(img!.data))).toBe(true)
    const other = await client.images.generate(model, 'a green pear', { width: 512, height: 256 })
    expect(Buffer.from(other[0]!.data).equals(Buffer.from(img!.data))).toBe(false)
  })

  it('edits an image given as bytes, a path or a data URL', async () => {
    const [source] = await client.images.generate(model, 'an orchard', { width: 16, height: 16 })
    const file = path.join(cacheRoot, 'source.png')
    writeFileSync(file, source!.data)
    const dataUrl = `data:image/png;base64,${Buffer.from(source!.data).toString('base64')}`
    const results = await Promise.all(
      [source!.data, file, dataUrl].map((image) =>
        client.images.edit(model, image, 'swap the colours', { trueCfgScale: 3 }),
      ),
    )
    for (const [edited] of results) {
      expect(edited!.decoderId).toBe('qwen_image_edit')
      checkPng(edited!)
      expect(Buffer.from(edited!.data).equals(Buffer.from(results[0]![0]!.data))).toBe(true)
    }
    const bad = await rejection(client.images.edit(model, Buffer.from('not a picture'), 'x'))
    expect(bad).toBeInstanceOf(InvalidRequestError)
    expect(bad.message).toMatch(/^image: not a PNG/)
    const noPrompt = await rejection(client.images.generate(model, ' '))
    expect(noPrompt.message).toMatch(/^prompt: /)
    const badOption = await rejection(client.images.edit(model, source!.data, 'x', { guidanceScale: 2 } as never))
    expect(badOption.message).toMatch(/^options\.guidanceScale: unknown key/)
  })
})

describe('stream: true', () => {
  it('hands out each artifact as its delta arrives, equal to the awaited result for the same seed', async () => {
    const awaited = await client.images.generate(model, 'a red apple', { width: 64, height: 64, seed: 5 })
    const stream = client.images.generate(model, 'a red apple', { width: 64, height: 64, seed: 5, stream: true })
    expect(stream).toBeInstanceOf(ModalStream)
    const streamed: ModalArtifact[] = []
    for await (const a of stream) streamed.push(a)
    expect(streamed.length).toBe(awaited.length)
    expect(streamed.length).toBeGreaterThan(0)
    for (const [i, a] of streamed.entries()) {
      checkPng(a)
      expect(Buffer.from(a.data).equals(Buffer.from(awaited[i]!.data))).toBe(true)
      expect(a.metadata).toEqual(awaited[i]!.metadata)
    }
    // Awaited, a stream resolves to the same artifacts; speech streams too.
    const speech = await client.audio.speech(model, 'Apples are ripe', { seed: 2 })
    const streamedSpeech = await client.audio.generate(model, 'Apples are ripe', { seed: 2, stream: true })
    expect(streamedSpeech.map((a) => Buffer.from(a.data))).toEqual(speech.map((a) => Buffer.from(a.data)))
    const edits = await client.images.edit(model, awaited[0]!.data, 'swap', { stream: true })
    expect(edits[0]!.decoderId).toBe('qwen_image_edit')
    // A stream is consumed once.
    const once = client.images.generate(model, 'x', { width: 16, height: 16, stream: true })
    await once
    expect(() => once[Symbol.asyncIterator]()).toThrow(InvalidRequestError)
  })

  it('cancel() mid-stream ends it with an AbortError and cancels the request in the engine', async () => {
    const stream = client.audio.speech(model, 'Apple trees blossom in the orchard every spring. '.repeat(300), {
      stream: true,
    })
    const seen: ModalArtifact[] = []
    const iterating = (async () => {
      for await (const a of stream) seen.push(a)
    })()
    // The iteration is waiting on the engine's deltas when the cancel comes.
    const requestId = await stream.requestId()
    await stream.cancel()
    expect(await rejection(iterating)).toBeInstanceOf(AbortError)
    expect(seen).toHaveLength(0)
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    // The artifact was never published: the engine stopped the request.
    expect(s.published_deltas).toBe(1)
    // An AbortSignal and `await using` stop it the same way.
    const controller = new AbortController()
    const signalled = client.images.generate(model, 'x', { stream: true, signal: controller.signal })
    controller.abort()
    expect(await rejection(Promise.resolve(signalled))).toBeInstanceOf(AbortError)
    {
      await using disposed = client.audio.speech(model, 'Apples. '.repeat(300), { stream: true })
      await disposed.requestId()
    }
  })

  it('input and engine errors arrive asynchronously, typed', async () => {
    let stream: ModalStream<ModalArtifact> | undefined
    expect(() => {
      stream = client.audio.speech(model, '', { stream: true })
    }).not.toThrow()
    const err = await rejection(Promise.resolve(stream!))
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect(err.message).toMatch(/^text: /)
    const badStream = await rejection(client.audio.speech(model, 'hi', { stream: 'yes' } as never))
    expect(badStream.message).toMatch(/^options\.stream: expected a boolean/)
    const unknown = await rejection(client.audio.transcribe(model, [0], { stream: true } as never))
    expect(unknown.message).toMatch(/^options\.stream: unknown key/)
    const iterated = (async () => {
      for await (const _ of client.images.generate(model, 'x', { width: 0, stream: true })) {
        /* fails first */
      }
    })()
    expect((await rejection(iterated)).message).toMatch(/^options\.width: /)
    const engineErr = await rejection(
      Promise.resolve(client.audio.speech(model, 'hi', { sampleRate: 1, stream: true })),
    )
    expect(engineErr).toBeInstanceOf(EngineError)
    expect(engineErr.message).toContain('sample_rate 1 is out of range')
  })
})

/** Three sentences: three WAVs (3, 3 and 7 words, 20 ms a word). */
const SENTENCES = 'Apples are ripe. Pears are green! Do plums fall in the autumn wind?'
const SENTENCE_WORDS = [3, 3, 7]
/** Two hundred sentences: two hundred WAVs, one a scheduler step. */
const LONG_SEGMENTS = 200
const LONG = 'Apple trees blossom in the orchard every spring. '.repeat(LONG_SEGMENTS)

describe('several artifacts a request', () => {
  it('speech comes one WAV a sentence, in order, the last artifact.done; streamed the same, byte for byte', async () => {
    const p = client.audio.speech(model, SENTENCES)
    const requestId = await p.requestId()
    const awaited = await p
    expect(awaited.map((a) => a.event)).toEqual(['artifact.delta', 'artifact.delta', 'artifact.done'])
    let start = 0
    for (const [i, a] of awaited.entries()) {
      const words = SENTENCE_WORDS[i]!
      expect(checkWav(a)).toBe((24_000 * 20 * words) / 1000)
      expect(a.metadata).toEqual({
        sample_rate: 24_000,
        channels: 1,
        duration_ms: 20 * words,
        start_ms: start,
        segment: i,
        reference_audio: false,
      })
      expect(a.delta.isFinal).toBe(false)
      start += 20 * words
    }
    expect(new Set(bytesOf(awaited).map((b) => b.toString('base64'))).size).toBe(3)
    // One delta an artifact, then the final delta.
    const s = await settledStats(engine, requestId)
    expect(s.published_deltas).toBe(4)

    const stream = client.audio.speech(model, SENTENCES, { stream: true })
    const streamed: ModalArtifact[] = []
    for await (const a of stream) streamed.push(a)
    expect(bytesOf(streamed)).toEqual(bytesOf(awaited))
    expect(streamed.map((a) => [a.event, a.metadata])).toEqual(awaited.map((a) => [a.event, a.metadata]))
    // Awaited after the loop, the stream resolves to what it handed out.
    expect(bytesOf(await stream)).toEqual(bytesOf(awaited))
  })

  it('an image of many steps sends small previews before the final image', async () => {
    const options = { width: 512, height: 256, numSteps: 192, seed: 4 }
    const awaited = await client.images.generate(model, 'a red apple', options)
    expect(awaited.map((a) => a.event)).toEqual(['artifact.delta', 'artifact.delta', 'artifact.done'])
    for (const [i, preview] of awaited.slice(0, 2).entries()) {
      expect(checkPng(preview, 'artifact.delta')).toEqual({ width: 16, height: 8 })
      expect(preview.metadata).toEqual({ width: 16, height: 8, step: 64 * (i + 1), num_steps: 192 })
      expect(preview.decoderId).toBe('flux')
    }
    expect(Buffer.from(awaited[0]!.data).equals(Buffer.from(awaited[1]!.data))).toBe(false)
    expect(checkPng(awaited[2]!)).toEqual({ width: 64, height: 32 })
    // The final image is the one a request of fewer steps gets, without previews.
    const plain = await client.images.generate(model, 'a red apple', { ...options, numSteps: 64 })
    expect(bytesOf(plain)).toEqual(bytesOf(awaited.slice(2)))
    const streamed: ModalArtifact[] = []
    for await (const a of client.images.generate(model, 'a red apple', { ...options, stream: true })) streamed.push(a)
    expect(bytesOf(streamed)).toEqual(bytesOf(awaited))
    expect(streamed.map((a) => a.metadata)).toEqual(awaited.map((a) => a.metadata))
  })

  /** Iterate `stream`, cancelling it at the first artifact: what was handed out (the loop must end in AbortError). */
  async function cancelAtFirst(stream: ModalStream<ModalArtifact>): Promise<ModalArtifact[]> {
    const seen: ModalArtifact[] = []
    const iterating = (async () => {
      for await (const a of stream) {
        seen.push(a)
        await stream.cancel()
      }
    })()
    expect(await rejection(iterating)).toBeInstanceOf(AbortError)
    return seen
  }

  it('cancel() after the first artifact: the stream ends there and the engine never sends the rest', async () => {
    const stream = client.audio.speech(model, LONG, { stream: true })
    const requestId = await stream.requestId()
    const seen = await cancelAtFirst(stream)
    expect(await rejection(Promise.resolve(stream))).toBeInstanceOf(AbortError)
    expect(seen).toHaveLength(1)
    expect(seen[0]!.event).toBe('artifact.delta')
    expect(seen[0]!.metadata).toMatchObject({ segment: 0, start_ms: 0 })
    checkWav(seen[0]!)
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    // The first artifact (maybe a few more, sent while the cancel travelled), then the
    // cancelled final delta: at least one artifact was never sent.
    expect(s.published_deltas).toBeGreaterThanOrEqual(2)
    expect(s.published_deltas).toBeLessThanOrEqual(LONG_SEGMENTS)
  })

  it('a cancel between two artifacts that arrived together hands out none after it', async () => {
    const stream = client.audio.speech(model, LONG, { stream: true })
    const requestId = await stream.requestId()
    // Several artifacts are out before the first pull, which takes the queued ones as one batch.
    await until(requestId, (x) => x.published_deltas >= 4)
    const seen = await cancelAtFirst(stream)
    expect(seen.map((a) => a.metadata?.segment)).toEqual([0])
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    expect(s.published_deltas).toBeLessThanOrEqual(LONG_SEGMENTS)
  })

  it('aborting the signal after the first preview stops the image in the engine', async () => {
    const controller = new AbortController()
    // 99 previews (every 64 steps) and the final image: 100 artifacts.
    const numSteps = 64 * 100
    const stream = client.images.generate(model, 'an orchard at dawn', {
      width: 64,
      height: 64,
      numSteps,
      stream: true,
      signal: controller.signal,
    })
    const requestId = await stream.requestId()
    const seen: ModalArtifact[] = []
    const iterating = (async () => {
      for await (const a of stream) {
        seen.push(a)
        controller.abort()
      }
    })()
    expect(await rejection(iterating)).toBeInstanceOf(AbortError)
    expect(seen).toHaveLength(1)
    expect(checkPng(seen[0]!, 'artifact.delta')).toEqual({ width: 16, height: 16 })
    expect(seen[0]!.metadata).toMatchObject({ step: 64, num_steps: numSteps })
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    expect(s.published_deltas).toBeGreaterThanOrEqual(2)
    expect(s.published_deltas).toBeLessThanOrEqual(100)
  })

  it('an awaited call aborted once the engine sent its first artifact rejects, the rest never sent', async () => {
    const controller = new AbortController()
    const p = client.audio.speech(model, LONG, { signal: controller.signal })
    const requestId = await p.requestId()
    await until(requestId, (x) => x.published_deltas >= 1)
    controller.abort()
    expect(await rejection(p)).toBeInstanceOf(AbortError)
    const s = await until(requestId, (x) => x.cancelled && x.active_sequences === 0)
    expect(s.published_deltas).toBeGreaterThanOrEqual(2)
    expect(s.published_deltas).toBeLessThanOrEqual(LONG_SEGMENTS)
  })
})
