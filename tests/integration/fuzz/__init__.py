"""Protocol fuzzing of the real app, seeded: every REST route, every gRPC method and every websocket stream gets
malformed, oversized, deeply nested, wrongly encoded, out-of-range and unauthorised input.

What must hold, whatever comes in:
- REST: never a 5xx; every 4xx carries {"error": {"code", "message", "details"}} (POST /v1/bid may answer 400
  with no body, as OpenRTB does); a body over the limit is 413; bad credentials are 401 everywhere.
- gRPC: never UNKNOWN or INTERNAL; bad credentials are UNAUTHENTICATED, a message over the limit
  RESOURCE_EXHAUSTED.
- websockets: one bad message never closes a stream or stops it answering: it gets an answer, and a good
  message after it gets its own. Only what RFC 6455 says fails a connection closes one: a frame over the size
  limit (1009) and a text frame that is not UTF-8 (1007); the next connection works.
- the server is still ready (`/health/ready` 200) at the end of each sweep.
"""
