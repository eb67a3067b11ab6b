"""The HTTP server: one route table, the Starlette app and OpenAPI document made from it, auth and
the request edge."""
