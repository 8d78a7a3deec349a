// Media inputs of the engine tasks: images as bytes, file paths or data URLs.

import { readFile } from 'node:fs/promises'

import { InvalidRequestError, ProtocolError } from '../errors'

/** An image: its bytes (`Uint8Array`, `Buffer`), a file path, or a `data:image/...;base64,` URL. */
export type ImageInput = Uint8Array | string

const SIGNATURES: Array<[string, (b: Uint8Array) => boolean]> = [
  ['image/png', (b) => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((x, i) => b[i] === x)],
  ['image/jpeg', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  ['image/gif', (b) => ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a'],
  ['image/webp', (b) => ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP'],
]

function ascii(b: Uint8Array, start: number, end: number): string {
  return Buffer.from(b.subarray(start, end)).toString('latin1')
}

/** The MIME type of image bytes from their signature, or an error naming `field`. */
export function imageMimeType(bytes: Uint8Array, field: string): string {
  const found = SIGNATURES.find(([, test]) => test(bytes))
  if (found === undefined) {
    const head = Buffer.from(bytes.subarray(0, 8)).toString('hex')
    throw new InvalidRequestError(
      `${field}: not a PNG, JPEG, GIF or WebP image (${bytes.length} bytes starting ${head || '(empty)'})`,
    )
  }
  return found[0]
}

const DATA_URL = /^data:([^;,]+)(;base64)?,/

/** The bytes of an image input, checked to be an image. */
export async function imageBytes(image: unknown, field: string): Promise<Uint8Array> {
  if (image instanceof Uint8Array) {
    imageMimeType(image, field)
    return image
  }
  if (typeof image !== 'string' || image.length === 0) {
    throw new InvalidRequestError(`${field}: expected image bytes (Uint8Array or Buffer), a file path or a data URL`)
  }
  const m = DATA_URL.exec(image)
  let bytes: Uint8Array
  if (m) {
    if (m[2] === undefined)
      throw new InvalidRequestError(`${field}: a data URL must be base64 (data:image/png;base64,...)`)
    bytes = Buffer.from(image.slice(m[0].length), 'base64')
  } else {
    try {
      bytes = await readFile(image)
    } catch (e) {
      const code = (e as { code?: unknown }).code
      throw new InvalidRequestError(
        `${field}: cannot read the file ${JSON.stringify(image)} (${typeof code === 'string' ? code : String(e)})`,
        { cause: e },
      )
    }
  }
  imageMimeType(bytes, field)
  return bytes
}

/** An image input as a base64 data URL of its own type. */
export async function imageDataUrl(image: unknown, field: string): Promise<string> {
  const bytes = await imageBytes(image, field)
  return `data:${imageMimeType(bytes, field)};base64,${Buffer.from(bytes).toString('base64')}`
}

/** Little-endian float32 values of a base64 payload (`what` names it in errors). */
export function float32s(b64: string, what: string): number[] {
  const bytes = Buffer.from(b64, 'base64')
  if (bytes.length % 4 !== 0) {
    throw new ProtocolError(`${what}: ${bytes.length} bytes is not a whole number of float32 values`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true))
}
