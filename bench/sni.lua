-- wrk -s sni.lua https://<name>:<port>/: connect to 127.0.0.1 whatever the
-- URL's host is, so that the URL's host name is only the TLS SNI (wrk sends
-- the URL's host as SNI) and the bench domain needs no DNS entry. Defines no
-- request/response hook: wrk's per-request path stays in C.
wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
