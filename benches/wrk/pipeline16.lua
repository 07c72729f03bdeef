-- Pipelining: every "request" wrk sends is 16 GET /_/hello in one write,
-- and it waits for all 16 answers before sending the next batch. wrk's
-- latency figures then time a batch, not a request: the report omits them.
init = function(args)
  local r = {}
  for i = 1, 16 do
    r[i] = wrk.format(nil, "/_/hello")
  end
  req = table.concat(r)
end

request = function()
  return req
end
