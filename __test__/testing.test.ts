// orchard-ts/testing: private emulators over real IPC, and the platform package list.
import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'

import { describe, expect, it } from 'vitest'

import { Engine, InvalidRequestError } from '../src-ts'
import { PREBUILT_PLATFORMS } from '../src-ts/platform'
import { createTestModel, emulatorPath, startTestEngine } from '../src-ts/testing'
import { repoRoot } from './helpers'

describe('startTestEngine', () => {
  it('starts a private emulator with a model loaded, streams a chat, and close() removes everything', async () => {
    const t = await startTestEngine()
    let text = ''
    for await (const d of t.client.chat(t.model, [{ role: 'user', content: 'Hello' }], { maxTokens: 10, seed: 3 }))
      text += d.text ?? ''
    expect(text.length).toBeGreaterThan(0)
    expect(t.engine.launched).toBe(true)
    expect(t.engine.cacheRoot).toBe(t.cacheRoot)
    expect(readdirSync(path.join(t.cacheRoot, 'ipc')).sort()).toEqual([
      'pie_management.ipc',
      'pie_requests.ipc',
      'pie_responses.ipc',
    ])
    const pid = t.engine.pid
    await t.close()
    await t.close() // idempotent
    expect(existsSync(t.cacheRoot)).toBe(false)
    expect(() => process.kill(pid, 0)).toThrow()
  })

  it('two test engines in one process are independent, whatever ORCHARD_IPC_ROOT says', async () => {
    const saved = process.env.ORCHARD_IPC_ROOT
    process.env.ORCHARD_IPC_ROOT = path.join(repoRoot, 'no-such-ipc-root')
    try {
      const a = await startTestEngine()
      const b = await startTestEngine({ family: 'qwen3_5' })
      try {
        expect(a.engine.pid).not.toBe(b.engine.pid)
        expect(a.cacheRoot).not.toBe(b.cacheRoot)
        const [ra, rb] = await Promise.all([
          a.client.chat(a.model, [{ role: 'user', content: 'Hi' }], { maxTokens: 8, seed: 1 }),
          b.client.chat(b.model, [{ role: 'user', content: 'Hi' }], { maxTokens: 8, seed: 1, reasoning: false }),
        ])
        expect(ra.usage.completionTokens).toBe(8)
        expect(rb.usage.completionTokens).toBeGreaterThan(0)
        // The qwen3_5 profile renders qwen's chat markup, llama3's its own.
        expect((await b.client.renderPrompt(b.model, [{ role: 'user', content: 'Hi' }])).prompt).toContain(
          '<|im_start|>user',
        )
        expect((await a.client.renderPrompt(a.model, [{ role: 'user', content: 'Hi' }])).prompt).toContain(
          '<|start_header_id|>user',
        )
      } finally {
        await a.close()
        await b.close()
      }
      expect(existsSync(process.env.ORCHARD_IPC_ROOT)).toBe(false)
    } finally {
      if (saved === undefined) delete process.env.ORCHARD_IPC_ROOT
      else process.env.ORCHARD_IPC_ROOT = saved
    }
  })

  it('an unknown family fails with the list of families, and leaves nothing behind', async () => {
    const err = await startTestEngine({ family: 'no_such_family' }).then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(InvalidRequestError)
    expect((err as Error).message).toMatch(/no_such_family.*llama3/s)
  })

  it('a test engine and an engine of another cache root coexist in one process', async () => {
    const t = await startTestEngine()
    const other = await startTestEngine()
    try {
      const again = await Engine.start({ binary: emulatorPath(), cacheRoot: t.cacheRoot })
      expect(again.pid).toBe(t.engine.pid)
      await again.close()
      expect(
        (await t.client.chat(t.model, [{ role: 'user', content: 'Hi' }], { maxTokens: 4 })).usage.completionTokens,
      ).toBe(4)
      expect(
        (await other.client.chat(other.model, [{ role: 'user', content: 'Hi' }], { maxTokens: 4 })).usage
          .completionTokens,
      ).toBe(4)
    } finally {
      await t.close()
      await other.close()
    }
  })
})

describe('createTestModel and emulatorPath', () => {
  it('writes a config.json naming the family', async () => {
    const dir = await createTestModel({ family: 'gemma3' })
    expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual({ model_type: 'gemma3' })
    await expect(createTestModel({ family: '../etc' })).rejects.toBeInstanceOf(InvalidRequestError)
  })

  it('emulatorPath is an executable file', () => {
    expect(() => accessSync(emulatorPath(), constants.X_OK)).not.toThrow()
  })
})

describe('platform packages', () => {
  it('npm/, the napi targets and the loader agree on the prebuilt platforms', () => {
    const dirs = readdirSync(path.join(repoRoot, 'npm')).sort()
    expect(dirs).toEqual([...PREBUILT_PLATFORMS].sort())
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
      version: string
      napi: { targets: string[] }
    }
    expect(pkg.napi.targets).toHaveLength(dirs.length)
    for (const dir of dirs) {
      const platform = JSON.parse(readFileSync(path.join(repoRoot, 'npm', dir, 'package.json'), 'utf8')) as Record<
        string,
        unknown
      >
      expect(platform.name).toBe(`orchard-ts-${dir}`)
      expect(platform.version).toBe(pkg.version)
      expect(platform.main).toBe(`orchard.${dir}.node`)
      expect(platform.files).toEqual([`orchard.${dir}.node`, 'proxy_inference_engine'])
      const [os, cpu, libc] = dir.split('-')
      expect(platform.os).toEqual([os])
      expect(platform.cpu).toEqual([cpu])
      expect(platform.libc).toEqual(libc === 'gnu' ? ['glibc'] : undefined)
    }
  })
})
