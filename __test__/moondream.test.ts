// The Moondream client end to end: over real IPC to the emulator's scripted Moondream 3.
import { writeFileSync } from 'node:fs'
import path from 'node:path'

import { beforeAll, describe, expect, it } from 'vitest'

import type { Client, Engine, Moondream } from '../src-ts'
import { AbortError, EngineError, InvalidRequestError } from '../src-ts'
import { makeModelDir, useEmulator } from './helpers'
import { rejection } from './pipeline-fixtures'

let engine: Engine
let client: Client
let cacheRoot: string
let md: Moondream

useEmulator('moondream', {}, (e) => {
  engine = e.engine
  client = e.client
  cacheRoot = e.cacheRoot
})

// A 1x1 PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
)
const OTHER_PNG = Buffer.concat([PNG, Buffer.from([0])])

beforeAll(async () => {
  const dir = makeModelDir(cacheRoot, 'moondream3', { model_type: 'moondream3' })
  await engine.loadModel(dir)
  md = client.moondream(dir)
})

const unit = (v: number): boolean => v >= 0 && v <= 1

describe('client.moondream', () => {
  it('captions an image at three lengths, deterministically', async () => {
    const short = await md.caption(PNG, { length: 'short' })
    const normal = await md.caption(PNG)
    const long = await md.caption(PNG, { length: 'long' })
    expect(short.caption).toMatch(/apples/)
    expect(normal.caption).toMatch(/apples/)
    expect(long.caption.startsWith(normal.caption)).toBe(true)
    expect(short.caption.length).toBeLessThan(normal.caption.length)
    expect(long.caption.length).toBeGreaterThan(normal.caption.length)
    expect((await md.caption(PNG)).caption).toBe(normal.caption)
  })

  it('streams a caption as it is generated', async () => {
    const pieces: string[] = []
    for await (const piece of md.caption(PNG, { stream: true })) pieces.push(piece)
    expect(pieces.length).toBeGreaterThan(3)
    expect(pieces.join('')).toBe((await md.caption(PNG)).caption)
  })

  it('takes an image as bytes, a file path or a data URL alike', async () => {
    const file = path.join(cacheRoot, 'one.png')
    writeFileSync(file, PNG)
    const dataUrl = `data:image/png;base64,${PNG.toString('base64')}`
    const a = await md.point(PNG, 'eyes')
    expect(await md.point(new Uint8Array(PNG), 'eyes')).toEqual(a)
    expect(await md.point(file, 'eyes')).toEqual(a)
    expect(await md.point(dataUrl, 'eyes')).toEqual(a)
  })

  it('points: normalised coordinates, one pair per instance', async () => {
    const { points } = await md.point(PNG, 'apple')
    expect(points.length).toBeGreaterThanOrEqual(1)
    for (const p of points) {
      expect(unit(p.x) && unit(p.y)).toBe(true)
      // The emulator's coordinates are multiples of 1/1024: exact through f32.
      expect(Number.isInteger(p.x * 1024) && Number.isInteger(p.y * 1024)).toBe(true)
    }
  })

  it('detects boxes from centres and sizes', async () => {
    const { objects } = await md.detect(OTHER_PNG, 'apple')
    expect(objects.length).toBeGreaterThanOrEqual(1)
    for (const o of objects) {
      expect(o.xMin).toBeLessThan(o.xMax)
      expect(o.yMin).toBeLessThan(o.yMax)
      expect([o.xMin, o.yMin, o.xMax, o.yMax].every(unit)).toBe(true)
    }
  })

  it('finds the gaze for an eye position (exact values)', async () => {
    const { gaze } = await md.gaze(PNG, { x: 0.25, y: 0.5 })
    expect(gaze).not.toBeNull()
    expect(gaze!.x).toBe(0.75)
    expect(gaze!.y).toBeGreaterThanOrEqual(0.5)
    expect(Number.isInteger(gaze!.y * 1024)).toBe(true)
  })

  it('answers a query; without reasoning there is no grounding', async () => {
    const r = await md.query(PNG, 'What is on the branch?', { reasoning: false })
    expect(r.answer).toBe('The image shows branch among apple trees.')
    expect(r.reasoning).toBeUndefined()
    const noImage = await md.query(null, 'What are pears?')
    expect(noImage.answer).toBe('You asked about pears.')
  })

  it('grounds reasoning spans in UTF-16 offsets, through emoji and CJK text', async () => {
    const r = await md.query(PNG, 'Where is the 🍎苹果?', { reasoning: true })
    expect(r.answer).toContain('🍎苹果')
    expect(r.reasoning).toBeDefined()
    const { text, grounding } = r.reasoning!
    expect(grounding).toHaveLength(1)
    const [span] = grounding
    expect(text.slice(span!.start, span!.end)).toBe('🍎苹果')
    // '🍎' is two UTF-16 code units: the span is 4 units long (3 code points).
    expect(span!.end - span!.start).toBe(4)
    expect(span!.points).toHaveLength(2)
    expect(span!.points.every((p) => unit(p.x) && unit(p.y))).toBe(true)
  })

  it('sends spatial references as capability parts, turning reasoning on', async () => {
    const r = await md.query(PNG, 'What is here?', { spatialRefs: [[0.5, 0.5]] })
    expect(r.answer).toBe('At (0.50, 0.50) there is an apple, near here.')
    expect(r.reasoning?.grounding.length).toBe(1)
    const box = await md.query(PNG, 'And here?', { spatialRefs: [[0.25, 0.25, 0.75, 0.75]], reasoning: false })
    expect(box.answer).toBe('At (0.50, 0.50) there is an apple, near here.')
  })

  it('rejects bad input with InvalidRequestError naming the field', async () => {
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => md.point(Buffer.from('not an image'), 'eyes'), /^image: not a PNG, JPEG, GIF or WebP image/],
      [() => md.point(path.join(cacheRoot, 'missing.png'), 'eyes'), /^image: cannot read the file/],
      [() => md.point('data:image/png,abc', 'eyes'), /^image: a data URL must be base64/],
      [() => md.point(PNG, ''), /^object: /],
      [() => md.caption(PNG, { length: 'medium' as never }), /^options\.length: /],
      [() => md.gaze(PNG, { x: 2, y: 0 }), /^eye\.x: /],
      [() => md.query(PNG, 'Hm?', { spatialRefs: [[0.1, 0.2, 0.3]] as never }), /^options\.spatialRefs\[0\]: /],
      [() => md.query(PNG, 'Hm?', { spatialRefs: [[0.1, Number.NaN]] }), /^options\.spatialRefs\[0\]\[1\]: /],
    ]
    for (const [p, message] of cases) {
      const err = await rejection(p())
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.message).toMatch(message)
    }
  })

  it('a task the engine cannot run fails with its error', async () => {
    const err = await rejection(
      Promise.resolve(client.chat(modelOf(), [{ role: 'user', content: 'x' }], { task: 'point' })),
    )
    expect(err).toBeInstanceOf(EngineError)
    expect(err.message).toContain("moondream task 'point' needs an image")
  })

  it('an aborted signal ends the call with AbortError', async () => {
    const controller = new AbortController()
    controller.abort()
    expect(await rejection(md.caption(PNG, { signal: controller.signal }))).toBeInstanceOf(AbortError)
  })
})

function modelOf(): string {
  return path.join(cacheRoot, 'models', 'moondream3')
}
