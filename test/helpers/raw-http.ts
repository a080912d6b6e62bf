/**
 * A bare HTTP/1.1 client over a socket, for requests that fetch() and http.request() refuse to
 * send: header values with control bytes, invalid UTF-8, repeated headers, oversized headers.
 */
import { connect } from 'node:net'

export interface RawReply {
  status: number
  /** Header names lower-cased; a repeated header keeps every value. */
  headers: Map<string, string[]>
  body: string
}

/**
 * Sends `GET path` to `url` with `headers` written byte for byte (each character of a name or
 * value is one byte, latin1), then reads the whole answer (the request says `Connection: close`).
 */
export function rawGet(url: string, path: string, headers: Array<[string, string]>, timeoutMs = 5_000): Promise<RawReply> {
  const { hostname, port } = new URL(url)
  const head = [`GET ${path} HTTP/1.1`, `Host: ${hostname}:${port}`, ...headers.map(([name, value]) => `${name}: ${value}`), 'Connection: close', '', '']
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.setTimeout(timeoutMs, () => {
      socket.destroy()
      reject(new Error(`no complete answer from ${url}${path} within ${timeoutMs} ms`))
    })
    socket.on('error', reject)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => {
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const lines = (split < 0 ? text : text.slice(0, split)).split('\r\n')
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1])
      if (!Number.isInteger(status)) return reject(new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 200))}`))
      const replyHeaders = new Map<string, string[]>()
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).trim().toLowerCase()
        replyHeaders.set(name, [...(replyHeaders.get(name) ?? []), line.slice(colon + 1).trim()])
      }
      const body = split < 0 ? '' : Buffer.from(text.slice(split + 4), 'latin1').toString('utf8')
      resolve({ status, headers: replyHeaders, body })
    })
    socket.write(Buffer.from(head.join('\r\n'), 'latin1'))
  })
}
