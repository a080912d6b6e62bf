// Koa 2 is installed as the alias `koa2` to run the suite on it; its API is Koa 3's for our use.
declare module 'koa2' {
  import Koa from 'koa'
  export default Koa
}
