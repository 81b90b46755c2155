"""HTTP plumbing shared by every route: who is calling (`auth`), reading bodies (`body`),
the request's dependencies (`deps`), ids and pagination of the API, JSON-RPC (`rpc`), the
ASGI middlewares, allowed host names (`hosts`) and the health routes."""
