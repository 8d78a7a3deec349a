// What the server suites share: a server on an ephemeral port with an official OpenAI client
// for it, and the APIError a call rejects with.
import OpenAI, { APIError } from 'openai'
import { expect } from 'vitest'

import { createServer, type OrchardServer, type ServerOptions } from '../src-ts/server'
import { rejection } from './pipeline-fixtures'

export interface ServedApi {
  server: OrchardServer
  /** The address it listens on, `http://host:port`. */
  url: string
  host: string
  /** `${url}/v1` */
  baseURL: string
  openai: OpenAI
}

/** `createServer(options)` listening on an ephemeral port (the default host), with an OpenAI client; the caller closes it. */
export async function serveOpenAI(options: ServerOptions, apiKey = 'unused'): Promise<ServedApi> {
  const server = createServer(options)
  const { url, host } = await server.listen({ port: 0 })
  const baseURL = `${url}/v1`
  return { server, url, host, baseURL, openai: new OpenAI({ baseURL, apiKey, maxRetries: 0 }) }
}

/** The APIError `p` rejects with (it must reject with one). */
export async function apiError(p: Promise<unknown>): Promise<APIError> {
  const err = await rejection(p)
  expect(err).toBeInstanceOf(APIError)
  return err as APIError
}
