// Command nullserver answers every HTTP request with 202 and a small JSON
// body after reading the request's body, and does nothing else.
//
// It measures the ceiling a benchmark of the API can reach on a machine:
// test/bench/loadgen against it costs what the load generator, net/http
// and the kernel cost per request, with no gateway, no Redis and no mail
// in between. A rate the gateway is asked to reach that is above a good
// fraction of this one cannot be reached on that machine with the load
// generator on it.
//
//	go run ./test/bench/nullserver -listen 127.0.0.1:18999 &
//	go run ./test/bench/loadgen -url http://127.0.0.1:18999 -token x -n 20000 -c 64
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

// accepted is the shape of a 202 from POST /v1/messages, so the load
// generator counts it as accepted.
const accepted = `{"id":"01JNULLSERVER0000000000000","status":"queued"}`

func main() {
	listen := flag.String("listen", "127.0.0.1:18999", "address to listen on")
	flag.Parse()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, accepted)
	})
	log.Fatal(http.ListenAndServe(*listen, h))
}
