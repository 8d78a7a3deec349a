// Each error class owns its code; native codes map to the class that owns them.
import { describe, expect, it } from 'vitest'

import type { OrchardError, OrchardErrorCode } from '../src-ts'
import * as orchard from '../src-ts'
import { fromNative, makeError } from '../src-ts/errors'

type ErrorClass = new (message: string, options?: { cause?: unknown }) => OrchardError

/** Every code, with its class and the classes it must also be an instance of. */
const OWNERS: Record<OrchardErrorCode, [ErrorClass, ...ErrorClass[]]> = {
  PROTOCOL: [orchard.ProtocolError],
  DELTAS_LOST: [orchard.DeltasLostError, orchard.ProtocolError],
  INVALID_REQUEST: [orchard.InvalidRequestError],
  TEMPLATE: [orchard.TemplateError, orchard.InvalidRequestError],
  TRANSPORT: [orchard.TransportError],
  ENGINE_NOT_FOUND: [orchard.EngineNotFoundError],
  ENGINE_STARTUP: [orchard.EngineStartupError],
  ENGINE_DIED: [orchard.EngineDiedError],
  ENGINE: [orchard.EngineError],
  MODEL_NOT_LOADED: [orchard.ModelNotLoadedError],
  TIMEOUT: [orchard.TimeoutError],
  ABORTED: [orchard.AbortError],
  IO: [orchard.IoError],
  INTERNAL: [orchard.InternalError],
  NATIVE_LOAD: [orchard.NativeLoadError],
  DOWNLOAD: [orchard.DownloadError],
  CHECKSUM: [orchard.ChecksumError, orchard.DownloadError],
  AUTH: [orchard.AuthenticationError],
  MODEL_NOT_FOUND: [orchard.ModelNotFoundError, orchard.ModelNotLoadedError],
}

describe('error classes', () => {
  for (const [code, [Cls, ...parents]] of Object.entries(OWNERS) as Array<
    [OrchardErrorCode, [ErrorClass, ...ErrorClass[]]]
  >) {
    it(`${code}: ${Cls.name} fixes its code, and the native code maps to it`, () => {
      const cause = new Error('underneath')
      const made = new Cls('what happened', { cause })
      expect(made.code).toBe(code)
      expect(made.message).toBe('what happened')
      expect(made.cause).toBe(cause)
      expect(made.name).toBe(Cls.name)

      const mapped = fromNative(new Error(`[ORCHARD:${code}] from the core`))
      expect(mapped).toBeInstanceOf(Cls)
      for (const parent of parents) expect(mapped).toBeInstanceOf(parent)
      expect(mapped).toBeInstanceOf(orchard.OrchardError)
      expect((mapped as OrchardError).code).toBe(code)
      expect((mapped as OrchardError).message).toBe('from the core')
    })
  }

  it('an unknown native code is an InternalError with code INTERNAL', () => {
    const e = makeError('NOT_A_CODE', 'odd')
    expect(e).toBeInstanceOf(orchard.InternalError)
    expect(e.code).toBe('INTERNAL')
  })

  it("napi-rs's argument errors are InvalidRequestError; other native errors InternalError", () => {
    const arg = Object.assign(new Error('Failed to convert JavaScript value'), { code: 'StringExpected' })
    expect(fromNative(arg)).toBeInstanceOf(orchard.InvalidRequestError)
    expect(fromNative(new Error('Cannot create a string longer than 0x1fffffe8 characters'))).toBeInstanceOf(
      orchard.InternalError,
    )
  })
})
