import { describe, expect, it } from 'vitest'

import { InvalidRequestError, ProtocolError, wire } from '../src-ts'
import type { WireRequest } from '../src-ts/wire'
import { parseTagged, readFixture, readFixtureText } from './helpers'

interface Vector {
  name: string
  request: WireRequest['request']
  prompts: WireRequest['prompts']
  frame_base64: string
}

const { vectors } = readFixture<{ vectors: Vector[] }>('wire-vectors.json')

// JSON.parse sorts integer-like keys, so a `logit_bias` map loses the fixture's order. Read
// that order from the text and pass the biases as ordered [token, bias] pairs instead.
const taggedVectors = (() => {
  const doc = parseTagged(readFixtureText('wire-vectors.json')) as { obj: Array<[string, unknown]> }
  return doc.obj.find(([k]) => k === 'vectors')![1] as Array<{ obj: Array<[string, unknown]> }>
})()

function field(o: unknown, key: string): unknown {
  return (o as { obj: Array<[string, unknown]> } | undefined)?.obj.find(([k]) => k === key)?.[1]
}

function orderedBias(vectorIndex: number, promptIndex: number): Array<[number, number]> | undefined {
  const prompts = field(taggedVectors[vectorIndex], 'prompts') as unknown[]
  const bias = field(field(prompts[promptIndex], 'logits_params'), 'logit_bias') as
    | { obj: Array<[string, { float: number }]> }
    | undefined
  return bias?.obj.map(([k, v]) => [Number(k), v.float])
}

function withOrderedBias(v: Vector, i: number): WireRequest {
  return {
    request: v.request,
    prompts: v.prompts.map((p, j) => {
      const pairs = orderedBias(i, j)
      return pairs ? { ...p, logits_params: { ...p.logits_params, logit_bias: pairs } } : p
    }),
  }
}

function split(frame: Buffer): { prefix: number; meta: string; payload: Buffer } {
  const prefix = frame.readUInt32LE(0)
  return { prefix, meta: frame.subarray(4, 4 + prefix).toString('utf8'), payload: frame.subarray(4 + prefix) }
}

/** The same vector with every base64 byte field turned into a Buffer. */
function withBuffers(v: WireRequest): WireRequest {
  const b = (s: unknown) => Buffer.from(String(s), 'base64')
  return {
    request: v.request,
    prompts: v.prompts.map((p) => {
      const q: Record<string, unknown> = { ...p }
      if (typeof p.prompt_bytes === 'string') q.prompt_bytes = b(p.prompt_bytes)
      if (p.image_buffers) q.image_buffers = p.image_buffers.map(b)
      if (p.audio_buffers) q.audio_buffers = p.audio_buffers.map(b)
      if (p.capabilities) q.capabilities = p.capabilities.map((c) => ({ ...c, payload: b(c.payload) }))
      return q as WireRequest['prompts'][number]
    }),
  }
}

describe('wire.encodeRequest reproduces the reference frames', () => {
  it('has the vectors', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(9)
  })

  vectors.forEach((v, i) => {
    for (const form of ['base64', 'Buffer'] as const) {
      it(`${v.name} (bytes as ${form})`, () => {
        const ordered = withOrderedBias(v, i)
        const input = form === 'base64' ? ordered : withBuffers(ordered)
        const got = split(wire.encodeRequest(input))
        const want = split(Buffer.from(v.frame_base64, 'base64'))
        expect(got.prefix).toBe(want.prefix)
        expect(got.payload.equals(want.payload)).toBe(true)
        expect(parseTagged(got.meta)).toEqual(parseTagged(want.meta))
      })
    }
  })

  it('takes ids as BigInt beyond 2^53', () => {
    const v = vectors[0]!
    const channel = (1n << 62n) + 5n
    const frame = wire.encodeRequest({ request: { ...v.request, response_channel_id: channel }, prompts: v.prompts })
    expect(split(frame).meta).toContain(`"response_channel_id":${channel}`)
  })

  it('names the field of bad input', () => {
    const v = vectors[0]!
    const bad = (prompts: unknown) => () =>
      wire.encodeRequest({ request: v.request, prompts: prompts as WireRequest['prompts'] })
    expect(bad([{ prompt_bytes: 'aGk=', sampling_params: { temperature: 'hot' } }])).toThrow(
      /prompts\[0\]\.sampling_params\.temperature/,
    )
    expect(bad([{ prompt_bytes: 'aGk=', sampling_params: { temprature: 1 } }])).toThrow(InvalidRequestError)
    expect(bad([{ prompt_bytes: '***' }])).toThrow(/prompts\[0\]\.prompt_bytes/)
    expect(bad([])).toThrow(/prompts/)
    expect(bad([{ prompt: 'hi', layout: [{ type: 'text', length: 5 }] }])).toThrow(/layout/)
    expect(bad([{ prompt_bytes: 5 }])).toThrow(
      /^prompts\[0\]\.prompt_bytes: expected base64 text or a Buffer, got a number$/,
    )
  })

  it('takes prompt bytes as base64, a Buffer or a Uint8Array alike, leaving the input as it was', () => {
    const v = vectors[0]!
    const base: WireRequest = { request: v.request, prompts: [{ prompt_bytes: 'aGk=', max_generated_tokens: 4 }] }
    const frame = wire.encodeRequest(base)
    expect(base.prompts[0]!.prompt_bytes).toBe('aGk=')
    expect(split(frame).payload.subarray(0, 2).toString()).toBe('hi')
    for (const bytes of [Buffer.from('hi'), new Uint8Array([104, 105]), new Uint8Array([0, 104, 105]).subarray(1)]) {
      const again = wire.encodeRequest({
        request: v.request,
        prompts: [{ prompt_bytes: bytes, max_generated_tokens: 4 }],
      })
      expect(again.equals(frame)).toBe(true)
    }
    // Text beyond ASCII reads back the same.
    const wide = wire.encodeRequest({
      request: { ...v.request, model_id: 'modèle-😀' },
      prompts: [{ prompt: 'héllo …', stop_sequences: ['…'], max_generated_tokens: 4 }],
    })
    const back = wire.decodeRequest(wide)
    expect(back.request.model_id).toBe('modèle-😀')
    expect(back.prompts[0]!.stop_sequences).toEqual(['…'])
    expect(split(wide).payload.subarray(0, Buffer.byteLength('héllo …')).toString()).toBe('héllo …')
    expect(() => wire.encodeRequest({ request: v.request, prompts: [{ prompt_bytes: 'aGé=' }] })).toThrow(
      /^prompts\[0\]\.prompt_bytes: not valid base64: Invalid symbol 195, offset 2\.$/,
    )
    // A prompt that is not plain data is sent as JSON writes it (here, through its toJSON).
    const custom = { prompt_bytes: 'bm8=', toJSON: () => ({ prompt_bytes: 'aGk=', max_generated_tokens: 4 }) }
    expect(wire.encodeRequest({ request: v.request, prompts: [custom] }).equals(frame)).toBe(true)
  })
})

describe('wire.decodeRequest', () => {
  it('reads every reference frame back into an input that encodes to the same bytes', () => {
    for (const v of vectors) {
      const frame = Buffer.from(v.frame_base64, 'base64')
      expect(wire.encodeRequest(wire.decodeRequest(frame)).equals(frame), v.name).toBe(true)
    }
  })

  it('rejects damaged frames with ProtocolError', () => {
    const frame = Buffer.from(vectors[0]!.frame_base64, 'base64')
    const metaLen = frame.readUInt32LE(0)
    const oversize = Buffer.from(frame)
    oversize.writeUInt32LE(0xffffffff, 0)
    const badJson = Buffer.from(frame)
    badJson[4] = '['.charCodeAt(0)
    const meta = frame
      .subarray(4, 4 + metaLen)
      .toString()
      .replace('"text_size":5', '"text_size":"five"')
    const wrongType = Buffer.concat([Buffer.alloc(4), Buffer.from(meta), frame.subarray(4 + metaLen)])
    wrongType.writeUInt32LE(Buffer.byteLength(meta), 0)
    const outside = Buffer.from(frame.subarray(0, frame.length - 8))
    for (const [name, bad] of [
      ['empty', Buffer.alloc(0)],
      ['short prefix', frame.subarray(0, 3)],
      ['truncated metadata', frame.subarray(0, 40)],
      ['oversize length', oversize],
      ['bad JSON', badJson],
      ['wrong field type', wrongType],
      ['blob outside the payload', outside],
    ] as const) {
      expect(() => wire.decodeRequest(bad), name).toThrow(ProtocolError)
    }
  })
})

describe('wire.buildChatFrame', () => {
  it('renders, resolves options and encodes what chat would send', () => {
    const frame = wire.buildChatFrame({
      config: { model_type: 'llama' },
      messages: [{ role: 'user', content: 'hello' }],
      options: { maxTokens: 7, temperature: 0, seed: 42, stop: ['END'] },
    })
    const req = wire.decodeRequest(frame)
    const p = req.prompts[0]!
    expect(Buffer.from(String(p.prompt_bytes), 'base64').toString()).toMatch(
      /<\|start_header_id\|>user<\|end_header_id\|>\n\nhello<\|eot_id\|>/,
    )
    expect(p.max_generated_tokens).toBe(7)
    expect(p.sampling_params).toMatchObject({ temperature: 0, rng_seed: 42 })
    expect(p.stop_sequences).toEqual(['END'])
  })

  it('uses the profile defaults for what the caller leaves out', () => {
    const req = wire.decodeRequest(
      wire.buildChatFrame({ config: { model_type: 'llama' }, messages: [{ role: 'user', content: 'x' }] }),
    )
    const p = req.prompts[0]!
    expect(p.stop_sequences).toEqual(['<|eot_id|>'])
    expect(p.sampling_params?.temperature).toBe(0.6)
    expect(p.max_generated_tokens).toBe(8192)
  })
})

describe('wire input JSON cannot carry', () => {
  it('encodeRequest and buildChatFrame throw InvalidRequestError naming the field, synchronously', () => {
    const request: WireRequest = {
      request: { request_id: 2n ** 60n, model_id: 'm', response_channel_id: 1 },
      prompts: [{ prompt: 'x', sampling_params: { temperature: Number.NaN } }],
    }
    expect(() => wire.encodeRequest(request)).toThrow(InvalidRequestError)
    expect(() => wire.encodeRequest(request)).toThrow(
      /^prompts\[0\]\.sampling_params\.temperature: NaN is not a finite number$/,
    )
    const build =
      (options: object, messages: unknown = [{ role: 'user', content: 'x' }]) =>
      () =>
        wire.buildChatFrame({ config: { model_type: 'llama' }, messages: messages as never, options })
    expect(build({ seed: 5n })).toThrow(/^seed: 5n is a BigInt/)
    expect(build({}, [{ role: 'user', content: 'x', extra: () => 1 }])).toThrow(
      /^messages\[0\]\.extra: a function cannot be sent/,
    )
  })
})

describe('wire.decodeMessage', () => {
  it('decodes a delta with its channel as BigInt', () => {
    const m = wire.decodeMessage(
      Buffer.from(
        'resp:1f9a7c3e0b21:{"request_id":12,"sequence_id":90001,"prompt_index":0,"candidate_index":0,"content":"Hel","tokens":[9906],"is_final_delta":false,"finish_reason":"DELTA","top_logprobs":[{"token":"9906","probability":-0.01}]}',
      ),
    )
    expect(m.kind).toBe('delta')
    if (m.kind !== 'delta') return
    expect(m.channel).toBe(0x1f9a7c3e0b21n)
    expect(m.delta).toMatchObject({ requestId: 12, content: 'Hel', tokens: [9906], isFinal: false })
    expect(m.delta.finishReason).toBeUndefined()
    expect(m.delta.topLogprobs).toEqual([{ tokenId: 9906, token: '9906', logprob: -0.01 }])
  })

  it('accepts error and error_message, logprob and probability, embedding bytes as base64 or array', () => {
    const d = (json: string) => {
      const m = wire.decodeMessage(Buffer.from(`resp:a:${json}`))
      if (m.kind !== 'delta') throw new Error('expected a delta')
      return m.delta
    }
    expect(d('{"request_id":1,"is_final_delta":true,"finish_reason":"error","error":"gone"}').errorMessage).toBe('gone')
    expect(
      d('{"request_id":1,"is_final_delta":true,"finish_reason":"error","error_message":"boom"}').errorMessage,
    ).toBe('boom')
    expect(d('{"request_id":1,"top_logprobs":[{"token":"5","logprob":-1.5}]}').topLogprobs[0]!.logprob).toBe(-1.5)
    const floats = Buffer.from(new Float32Array([0.5, -2]).buffer)
    expect(d(`{"request_id":1,"embedding_bytes":"${floats.toString('base64')}"}`).embedding).toEqual([0.5, -2])
    expect(d(`{"request_id":1,"embedding_bytes":[${[...floats].join(',')}]}`).embedding).toEqual([0.5, -2])
  })

  it('decodes events', () => {
    const m = wire.decodeMessage(
      Buffer.concat([Buffer.from('__PIE_EVENT__:telemetry\0'), Buffer.from('{"health":{"pid":42}}')]),
    )
    expect(m).toEqual({ kind: 'event', name: 'telemetry', payload: { health: { pid: 42 } } })
  })

  it('rejects malformed messages with ProtocolError', () => {
    for (const bad of [
      'resp:xyz:{}',
      'resp:12{}',
      'resp:12:{"request_id":',
      '__PIE_EVENT__:telemetry{}',
      'nonsense',
      'resp:1:{"request_id":"x"}',
    ]) {
      expect(() => wire.decodeMessage(Buffer.from(bad)), bad).toThrow(ProtocolError)
    }
  })
})
