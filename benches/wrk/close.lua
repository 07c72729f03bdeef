-- Churn: every request asks the server to close the connection after its
-- answer (Connection: close), so wrk opens a new connection for each one.
-- The server pays for an accept, a close and a TIME_WAIT per request.
wrk.headers["Connection"] = "close"
