/**
 * The demo's one page, rendered on the server from plain data: no templates, no build step, no
 * external assets. Every value that reaches the HTML goes through `escapeHtml`, including values
 * the visitor typed (their user name) and the session JSON.
 */

export interface Product {
  id: string
  name: string
}

/**
 * One of the logged-in user's sessions, as the page shows it. It carries only the start of the id
 * (`idPrefix`): the server resolves a prefix back to a session of the same user, never the page.
 */
export interface Device {
  prefix: string
  thisDevice: boolean
  createdAt: Date | undefined
  lastSeenAt: Date | undefined
  expiresAt: Date | undefined
}

export interface PageView {
  /** The session id; the page shows only its start (see `shortId`). */
  sessionId: string | undefined
  isNew: boolean
  expiresAt: Date | undefined
  user: string | undefined
  /** The logged-in user's sessions (`listByUser`), oldest first; `undefined` when logged out. */
  devices: Device[] | undefined
  views: number
  clicks: number
  /** Product names in the cart, in the order they were added. */
  cart: string[]
  products: readonly Product[]
  flash: string | undefined
  /** `ctx.session.toJSON()`: what the store holds for this session. */
  data: unknown
  store: string
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char)
}

/**
 * Enough of the id to tell sessions apart on screen. The whole id is a bearer secret: the cookie
 * is httpOnly so that scripts cannot read it, and printing it in the page would undo that.
 */
export function idPrefix(id: string): string {
  return id.slice(0, 8)
}

export function shortId(id: string | undefined): string {
  return id === undefined ? '(none)' : `${idPrefix(id)}…`
}

const time = (date: Date | undefined): string => date?.toISOString() ?? '—'

/** "Your sessions": a row per session of the logged-in user, and the forms that end them. */
function renderDevices(devices: Device[]): string {
  const e = escapeHtml
  const rows = devices
    .map((d) => {
      const label = d.thisDevice ? `${e(d.prefix)}… <strong>(this device)</strong>` : `${e(d.prefix)}…`
      // A prefix, not the id: it names the session to this user's own server-side lookup only.
      const action = d.thisDevice
        ? ''
        : `<form method="post" action="/sessions/revoke"><input type="hidden" name="session" value="${e(d.prefix)}"><button>Revoke</button></form>`
      return `<tr${d.thisDevice ? ' class="this-device"' : ''}><td>${label}</td><td>${e(time(d.createdAt))}</td><td>${e(time(d.lastSeenAt))}</td><td>${e(time(d.expiresAt))}</td><td>${action}</td></tr>`
    })
    .join('\n      ')
  return `<section>
  <h2>Your sessions (<span id="device-count">${e(devices.length)}</span>)</h2>
  <table>
    <thead><tr><th>Session</th><th>Created</th><th>Last seen</th><th>Expires</th><th></th></tr></thead>
    <tbody id="devices">
      ${rows}
    </tbody>
  </table>
  <form method="post" action="/sessions/others"><button>Log out everywhere else</button></form>
  <p class="hint">Listed with <code>await sessions.listByUser(user)</code>, where <code>sessions</code> is the
  middleware that <code>session()</code> returned. "Log out everywhere else" is
  <code>await sessions.destroyByUser(user, { except: ctx.sessionId })</code>.</p>
</section>
`
}

export function renderPage(view: PageView): string {
  const e = escapeHtml
  const flash = view.flash === undefined ? '' : `<p class="flash" id="flash">${e(view.flash)}</p>`

  const account =
    view.user === undefined
      ? `<form method="post" action="/login" class="row">
          <label>User name <input name="user" required maxlength="40" autocomplete="username"></label>
          <button>Log in</button>
        </form>
        <p class="hint">Logging in calls <code>await ctx.session.login(name)</code>: the session gets a new id
        (watch it change above) and keeps its data, so a session id planted before login is worthless after it;
        and the new id is entered in the user's index, so the user's other devices can list and end it.</p>`
      : `<p>Signed in as <strong id="user">${e(view.user)}</strong></p>
        <form method="post" action="/logout"><button>Log out</button></form>
        <p class="hint">Logging out calls <code>await ctx.session.logout()</code>: the session is deleted from the
        store and from the user's index, and the cookie is cleared.</p>`

  const items =
    view.cart.length === 0 ? '<li class="empty">empty</li>' : view.cart.map((name) => `<li>${e(name)}</li>`).join('')
  const options = view.products.map((p) => `<option value="${e(p.id)}">${e(p.name)}</option>`).join('')

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>koa-atomic-session demo</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
  h2 { font-size: 1.05rem; margin: 0 0 0.5rem; }
  section { border: 1px solid #ddd; border-radius: 8px; padding: 0.8rem 1rem; margin: 1rem 0; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0; }
  dt { color: #666; }
  dd { margin: 0; font-family: ui-monospace, monospace; }
  form { display: inline-block; margin: 0.2rem 0.4rem 0.2rem 0; }
  .row { display: flex; gap: 0.5rem; align-items: center; }
  button { font: inherit; padding: 0.2rem 0.8rem; cursor: pointer; }
  input, select { font: inherit; padding: 0.15rem 0.3rem; }
  pre { background: #f6f6f6; padding: 0.6rem; border-radius: 6px; overflow-x: auto; margin: 0; }
  .hint, .sub { color: #666; font-size: 0.9em; }
  .flash { background: #fff4d6; border: 1px solid #e8c66a; border-radius: 6px; padding: 0.4rem 0.8rem; }
  .empty { color: #999; list-style: none; }
  table { border-collapse: collapse; width: 100%; font-size: 0.85em; }
  th, td { text-align: left; padding: 0.2rem 0.4rem; border-bottom: 1px solid #eee; }
  td { font-family: ui-monospace, monospace; }
  .this-device { background: #eef6ff; }
</style>
</head>
<body>
<h1>koa-atomic-session demo</h1>
<p class="sub">Store: ${e(view.store)}. Every button is a plain form POST that redirects back here.</p>
${flash}
<section>
  <h2>Session</h2>
  <dl>
    <dt>id</dt><dd id="session-id">${e(shortId(view.sessionId))}</dd>
    <dt>new</dt><dd id="is-new">${view.isNew ? 'yes' : 'no'}</dd>
    <dt>expires</dt><dd id="expires">${e(view.expiresAt?.toISOString() ?? '(not stored)')}</dd>
    <dt>page views</dt><dd id="views">${e(view.views)}</dd>
  </dl>
</section>

<section>
  <h2>Account</h2>
  ${account}
</section>

${view.devices === undefined ? '' : renderDevices(view.devices)}
<section>
  <h2>Cart (<span id="cart-count">${e(view.cart.length)}</span>)</h2>
  <ul id="cart">${items}</ul>
  <form method="post" action="/cart/add" class="row">
    <select name="product" aria-label="Product">${options}</select>
    <button>Add to cart</button>
  </form>
  <form method="post" action="/cart/clear"><button>Clear cart</button></form>
  <p class="hint">Adding runs <code>ctx.session.cart.items.push(…)</code>: a change deep inside a value marks its
  top-level key <code>cart</code> as changed, and only that key is written.</p>
</section>

<section>
  <h2>Atomic counter: <span id="clicks">${e(view.clicks)}</span></h2>
  <form method="post" action="/click"><button>+1</button></form>
  <p class="hint"><code>await ctx.session.increment('clicks')</code> adds in the store itself, so clicks from two
  tabs at once are both counted.</p>
</section>

<section>
  <h2>Session data</h2>
  <pre id="data">${e(JSON.stringify(view.data, null, 2))}</pre>
</section>
</body>
</html>
`
}
