/**
 * The built package as users load it (npm test builds it first): from `import` and `require`,
 * with type declarations, and without loading any database client from the root entry.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { describe, it } from 'node:test'

const run = (args: string[]): string => execFileSync(process.execPath, args, { encoding: 'utf8' }).trim()
const PUBLIC = ['MemoryStore', 'SessionConflictError', 'SessionError', 'SessionOptionError', 'SessionStateError', 'SessionStoreError', 'SessionTooLargeError', 'SessionValueError', 'fromWholeObjectStore', 'headerTransport', 'session']

describe('package', () => {
  it('loads from require with the public surface', () => {
    const keys = run(['-e', "console.log(Object.keys(require('koa-atomic-session')).sort().join(','))"])
    assert.equal(keys, PUBLIC.join(','))
  })

  it('loads from import with the same surface', () => {
    const keys = run(['--input-type=module', '-e', "const m = await import('koa-atomic-session'); console.log(Object.keys(m).sort().join(','))"])
    assert.equal(keys, PUBLIC.join(','))
  })

  it('ships type declarations for both module systems', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'))
    for (const condition of ['import', 'require'] as const) {
      const types: string = pkg.exports['.'][condition].types
      assert.ok(existsSync(types), `${types} is missing`)
      assert.match(readFileSync(types, 'utf8'), /export \{ session/)
    }
  })

  it('packs the built code with its declarations, the README and the LICENSE, and nothing else', () => {
    // --ignore-scripts: npm test has built dist/ already; prepack (which builds) is checked below.
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
    const packed = JSON.parse(execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))
    const files: string[] = packed[0].files.map((file: { path: string }) => file.path)
    assert.deepEqual(files.filter((path) => !path.startsWith('dist/')).sort(), ['LICENSE', 'README.md', 'package.json'])
    for (const path of ['dist/esm/index.js', 'dist/esm/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/esm/stores/redis/index.js']) {
      assert.ok(files.includes(path), `${path} is not packed`)
    }
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'))
    assert.equal(pkg.scripts.prepack, 'npm run build', 'npm pack and npm publish must build dist/ first')
  })

  it('never loads a database client from the root entry', () => {
    const loaded = run([
      '-e',
      "require('koa-atomic-session'); console.log(Object.keys(require.cache).filter((f) => /node_modules[\\\\/](ioredis|redis|@redis|mongodb)[\\\\/]/.test(f)).length)",
    ])
    assert.equal(loaded, '0')
  })
})
