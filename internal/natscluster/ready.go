package natscluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Ready waits until every node admits the service and JetStream answers
// through each of them (a meta leader exists), or the timeout passes.
func (c *Cluster) Ready(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		for {
			err := c.jetStreamAnswers(n)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("natscluster: %s not ready after %s: %v", n.Name, timeout, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
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

// Connect opens a connection as the service user to any node, reconnecting
// forever (a fault test keeps it across node kills).
func (c *Cluster) Connect(name string) (*nats.Conn, error) {
	return nats.Connect(c.ClientURLs(), nats.Name(name), nats.UserInfo(ServiceUser, c.Password),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(time.Second))
}

// MetaLeader is the name of the JetStream meta leader, as the first running
// node that knows one reports it on its monitoring port (/jsz).
func (c *Cluster) MetaLeader() (string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error = errNoLeader
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		resp, err := client.Get(n.MonitorURL() + "/jsz")
		if err != nil {
			last = err
			continue
		}
		var jsz struct {
			Meta *struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil {
			last = fmt.Errorf("%s /jsz: %w", n.Name, err)
			continue
		}
		if jsz.Meta != nil && jsz.Meta.Leader != "" {
			return jsz.Meta.Leader, nil
		}
	}
	return "", fmt.Errorf("meta leader: %w", last)
}

// StreamLeader is the name of the node that leads stream.
func StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s: %w", stream, errNoLeader)
	}
	return info.Cluster.Leader, nil
}

// StreamCurrent reports nil when stream has a leader and all its other
// replicas are current and active: a restarted node has caught up.
func StreamCurrent(ctx context.Context, js jetstream.JetStream, stream string, replicas int) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return fmt.Errorf("stream %s: %w", stream, errNoLeader)
	}
	if len(info.Cluster.Replicas) != replicas-1 {
		return fmt.Errorf("stream %s: %d followers, want %d", stream, len(info.Cluster.Replicas), replicas-1)
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current || p.Offline {
			return fmt.Errorf("stream %s: replica %s not current", stream, p.Name)
		}
	}
	return nil
}
