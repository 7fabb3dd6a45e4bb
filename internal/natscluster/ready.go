package natscluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WaitReady waits until every node admits the service and JetStream answers
// through each of them (a meta leader exists).
func (c *Cluster) WaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		for {
			err := c.jetStreamAnswers(n)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("natscluster: %s not ready after %s: %v", n.Name, timeout, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (c *Cluster) jetStreamAnswers(n *Node) error {
	nc, err := nats.Connect(n.ClientURL(), nats.UserInfo(ServiceUser, c.Password), nats.MaxReconnects(0), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return err
	}
	if info.Domain == "" {
		return fmt.Errorf("no JetStream domain")
	}
	return nil
}
