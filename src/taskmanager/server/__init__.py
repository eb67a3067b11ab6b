"""The HTTP server: FastAPI app factory, thin routes, auth and the request edge."""
