/**
 * WAV (RIFF/WAVE) reading and writing for the audio routes: uploads are decoded to mono
 * float32 PCM and resampled to the rate the speech-to-text models take; the engine's speech
 * WAVs are unwrapped to raw 16-bit PCM for `response_format: 'pcm'`. Every read is bounds
 * checked; a malformed file is a {@link WavFormatError} saying what is wrong.
 */

/** A WAV file the server cannot read, and why. */
export class WavFormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WavFormatError'
  }
}

export interface Wav {
  sampleRate: number
  channels: number
  /** Bits per sample of the stored data. */
  bits: number
  /** `int` (PCM) or `float` (IEEE). */
  encoding: 'int' | 'float'
  /** The sample data, interleaved by channel. */
  data: Uint8Array
}

/** The sample rates an upload may have. */
export const MIN_SAMPLE_RATE = 1000
export const MAX_SAMPLE_RATE = 384_000

const FORMAT_PCM = 1
const FORMAT_FLOAT = 3
const FORMAT_EXTENSIBLE = 0xfffe

function tag(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!)
}

/** Whether `bytes` start like a WAV file. */
export function isWav(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && tag(bytes, 0) === 'RIFF' && tag(bytes, 8) === 'WAVE'
}

/** Read a WAV's format and sample data (PCM 8/16/24/32-bit or float 32/64-bit, any channel count). */
export function parseWav(bytes: Uint8Array): Wav {
  if (!isWav(bytes)) throw new WavFormatError('not a WAV file (no RIFF/WAVE header)')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let fmt: Omit<Wav, 'data'> | undefined
  let data: Uint8Array | undefined
  for (let at = 12; at + 8 <= bytes.length; ) {
    const id = tag(bytes, at)
    const declared = view.getUint32(at + 4, true)
    const start = at + 8
    // A file written while streaming may declare a data size it never reached (or 0xFFFFFFFF).
    const size = Math.min(declared, bytes.length - start)
    if (id === 'fmt ') fmt ??= readFmt(view, start, size)
    else if (id === 'data') data ??= bytes.subarray(start, start + size)
    at = start + size + (size % 2)
  }
  if (fmt === undefined) throw new WavFormatError('the WAV file has no fmt chunk')
  if (data === undefined) throw new WavFormatError('the WAV file has no data chunk')
  const frame = (fmt.bits / 8) * fmt.channels
  return { ...fmt, data: data.subarray(0, data.length - (data.length % frame)) }
}

function readFmt(view: DataView, at: number, size: number): Omit<Wav, 'data'> {
  if (size < 16) throw new WavFormatError(`the fmt chunk is ${size} bytes; expected at least 16`)
  let format = view.getUint16(at, true)
  const channels = view.getUint16(at + 2, true)
  const sampleRate = view.getUint32(at + 4, true)
  const bits = view.getUint16(at + 14, true)
  if (format === FORMAT_EXTENSIBLE) {
    // The sub-format GUID starts with the format code.
    if (size < 26) throw new WavFormatError('the extensible fmt chunk is too short')
    format = view.getUint16(at + 24, true)
  }
  if (channels === 0) throw new WavFormatError('the WAV file has 0 channels')
  if (sampleRate < MIN_SAMPLE_RATE || sampleRate > MAX_SAMPLE_RATE) {
    throw new WavFormatError(`sample rate ${sampleRate} Hz; expected ${MIN_SAMPLE_RATE} to ${MAX_SAMPLE_RATE}`)
  }
  if (format === FORMAT_PCM && [8, 16, 24, 32].includes(bits)) return { sampleRate, channels, bits, encoding: 'int' }
  if (format === FORMAT_FLOAT && (bits === 32 || bits === 64)) {
    return { sampleRate, channels, bits, encoding: 'float' }
  }
  throw new WavFormatError(
    `unsupported sample format (code ${format}, ${bits} bits); expected PCM 8/16/24/32-bit or float 32/64-bit`,
  )
}

/** Whole frames (one sample per channel) in the WAV's data. */
export function frameCount(wav: Wav): number {
  return Math.floor(wav.data.length / ((wav.bits / 8) * wav.channels))
}

/** The WAV's samples as mono float32 in [-1, 1] (channels averaged). */
export function monoSamples(wav: Wav): Float32Array {
  const { channels, bits, encoding } = wav
  const view = new DataView(wav.data.buffer, wav.data.byteOffset, wav.data.byteLength)
  const width = bits / 8
  const frames = frameCount(wav)
  const read = (at: number): number => {
    if (encoding === 'float') return bits === 32 ? view.getFloat32(at, true) : view.getFloat64(at, true)
    switch (bits) {
      case 8:
        return (view.getUint8(at) - 128) / 128
      case 16:
        return view.getInt16(at, true) / 32768
      case 24:
        return ((view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16)) >> 0) / 8388608
      default:
        return view.getInt32(at, true) / 2147483648
    }
  }
  const out = new Float32Array(frames)
  for (let f = 0; f < frames; f++) {
    let sum = 0
    for (let ch = 0; ch < channels; ch++) {
      const v = read((f * channels + ch) * width)
      // A float file may hold NaN or ±Infinity: silence, not poison for the engine.
      if (Number.isFinite(v)) sum += v
    }
    out[f] = sum / channels
  }
  return out
}

/** The WAV's audio as raw mono 16-bit little-endian PCM (the data itself when it already is). */
export function pcm16(wav: Wav): Uint8Array {
  if (wav.encoding === 'int' && wav.bits === 16 && wav.channels === 1) return wav.data
  const samples = monoSamples(wav)
  const out = new Uint8Array(samples.length * 2)
  const view = new DataView(out.buffer)
  for (const [i, s] of samples.entries()) {
    view.setInt16(i * 2, Math.round(Math.max(-1, Math.min(1, s)) * 32767), true)
  }
  return out
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b]
  return a
}

/** Zero crossings of the windowed-sinc kernel on each side. */
const ZERO_CROSSINGS = 8

/**
 * Resample mono audio from `from` Hz to `to` Hz: a polyphase windowed-sinc (Hann) filter,
 * low-passed at the lower of the two Nyquist frequencies.
 */
export function resample(x: Float32Array, from: number, to: number): Float32Array {
  if (from === to || x.length === 0) return x
  const g = gcd(from, to)
  const up = to / g
  const down = from / g
  const cutoff = Math.min(1, to / from)
  const half = ZERO_CROSSINGS / cutoff
  const taps = 2 * Math.ceil(half)
  const first = 1 - taps / 2
  // One filter per output phase, normalised to unity gain.
  const filters = Array.from({ length: up }, (_, phase) => {
    const frac = phase / up
    const w = new Float32Array(taps)
    let sum = 0
    for (let k = 0; k < taps; k++) {
      const d = first + k - frac
      if (Math.abs(d) >= half) continue
      const arg = Math.PI * cutoff * d
      const sinc = d === 0 ? 1 : Math.sin(arg) / arg
      w[k] = sinc * (0.5 + 0.5 * Math.cos((Math.PI * d) / half))
      sum += w[k]!
    }
    for (let k = 0; k < taps; k++) w[k]! /= sum
    return w
  })
  const out = new Float32Array(Math.round((x.length * up) / down))
  for (let i = 0; i < out.length; i++) {
    const base = Math.floor((i * down) / up)
    const w = filters[(i * down) % up]!
    let acc = 0
    for (let k = 0; k < taps; k++) {
      const j = base + first + k
      if (j >= 0 && j < x.length) acc += x[j]! * w[k]!
    }
    out[i] = acc
  }
  return out
}

/** A canonical 44-byte-header WAV file of `format` holding `data`. */
export function wavFile(format: Omit<Wav, 'data'>, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(44 + data.length)
  const view = new DataView(out.buffer)
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i)
  }
  const frame = (format.bits / 8) * format.channels
  ascii(0, 'RIFF')
  view.setUint32(4, 36 + data.length, true)
  ascii(8, 'WAVE')
  ascii(12, 'fmt ')
  view.setUint32(16, 16, true)
  view.setUint16(20, format.encoding === 'float' ? FORMAT_FLOAT : FORMAT_PCM, true)
  view.setUint16(22, format.channels, true)
  view.setUint32(24, format.sampleRate, true)
  view.setUint32(28, format.sampleRate * frame, true)
  view.setUint16(32, frame, true)
  view.setUint16(34, format.bits, true)
  ascii(36, 'data')
  view.setUint32(40, data.length, true)
  out.set(data, 44)
  return out
}
