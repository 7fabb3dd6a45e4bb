package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/app"
	"github.com/enrollgate/enrollgate/internal/natsserver"
)

// BenchmarkVerifyOverNATS is a real verify (decide, append, reply) through
// the service that `serve` starts, asked by a client in the service's own
// account (as every client was before tokens) and by an enrollment token in
// its account, in the same run. Every attempt is a right passcode from a new
// source, so nothing throttles or locks.
func BenchmarkVerifyOverNATS(b *testing.B) {
	const password = "bench-service-password-0123"
	const frontendToken = "bench-enrollment-token-0123"
	cfg, err := parseConfig("serve", []string{"--data-dir", b.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--nats-service-password", password, "--admin-token", "bench-admin-token-0123456", "--enrollment-token", frontendToken},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	const sites = 16 // the attempts of 16 frontends spread over sites, as in production
	passcodes := make([]string, sites)
	for i := range passcodes {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/v1/sites/site-%d/passcode", a.HTTPAddr(), i), nil)
		req.Header.Set("Authorization", "Bearer bench-admin-token-0123456")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var gen struct{ Passcode string }
		if err := json.NewDecoder(resp.Body).Decode(&gen); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		passcodes[i] = gen.Passcode
	}
	var n atomic.Int64
	verify := func(b *testing.B, nc *nats.Conn) {
		i := n.Add(1)
		site := i % sites
		body := fmt.Sprintf(`{"passcode":%q,"source":{"ip":"10.%d.%d.%d"}}`, passcodes[site], i>>16&255, i>>8&255, i&255)
		m, err := nc.Request(fmt.Sprintf("enrollgate.verify.site-%d", site), []byte(body), 10*time.Second)
		if err != nil {
			b.Error(err)
			return
		}
		if !strings.Contains(string(m.Data), `"ok":true`) {
			b.Errorf("verdict %s", m.Data)
		}
	}
	for _, clients := range []int{1, 16} {
		for _, c := range []struct {
			name string
			opt  nats.Option
		}{
			{"service-account", nats.UserInfo(natsserver.ServiceUser, password)},
			{"token-account", nats.Token(frontendToken)},
		} {
			b.Run(fmt.Sprintf("%s/clients=%d", c.name, clients), func(b *testing.B) {
				next := make(chan *nats.Conn, clients)
				for range clients {
					nc, err := nats.Connect(a.ClientURL(), c.opt)
					if err != nil {
						b.Fatal(err)
					}
					defer nc.Close()
					next <- nc
				}
				b.ResetTimer()
				if clients == 1 {
					nc := <-next
					for range b.N {
						verify(b, nc)
					}
					return
				}
				b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					nc := <-next
					for pb.Next() {
						verify(b, nc)
					}
				})
			})
		}
	}
}
