// Command dnsprobe checks cluster DNS from inside a pod: for each name given it resolves the
// name the way a pod's programs do (the pure-Go resolver reading the pod's /etc/resolv.conf:
// its nameserver, search list and ndots), again over TCP to the same nameserver, then sends
// GET http://<name>:<port>/ and prints one JSON line per name. Standard library only, built
// static (CGO off) so the binary alone is an image. Exit status 0 even on failures: the test
// reading the log judges the result.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

type result struct {
	Name     string   `json:"name"`
	Addrs    []string `json:"addrs"`
	TCPAddrs []string `json:"tcp_addrs"`
	Status   int      `json:"status"`
	Body     string   `json:"body"`
	Errors   []string `json:"errors"`
}

func main() {
	port := flag.Int("port", 80, "HTTP port to GET / on")
	flag.Parse()
	resolvConf, _ := os.ReadFile("/etc/resolv.conf")
	fmt.Printf("{\"resolv_conf\": %q}\n", string(resolvConf))
	udp := &net.Resolver{PreferGo: true}
	tcp := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, address string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", address)
		},
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, name := range flag.Args() {
		r := result{Name: name, Addrs: []string{}, TCPAddrs: []string{}, Errors: []string{}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if addrs, err := udp.LookupHost(ctx, name); err != nil {
			r.Errors = append(r.Errors, "udp: "+err.Error())
		} else {
			r.Addrs = addrs
		}
		if addrs, err := tcp.LookupHost(ctx, name); err != nil {
			r.Errors = append(r.Errors, "tcp: "+err.Error())
		} else {
			r.TCPAddrs = addrs
		}
		cancel()
		if resp, err := client.Get(fmt.Sprintf("http://%s:%d/", name, *port)); err != nil {
			r.Errors = append(r.Errors, "http: "+err.Error())
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			r.Status, r.Body = resp.StatusCode, string(body)
		}
		line, _ := json.Marshal(r)
		fmt.Println(string(line))
	}
}
