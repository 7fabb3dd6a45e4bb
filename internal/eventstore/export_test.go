package eventstore

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishFunc is the publish call of a Store.
type PublishFunc = func(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)

// WrapPublish lets a test stand between the store and the server, to lose an
// answer the server really gave.
func (s *Store) WrapPublish(wrap func(next PublishFunc) PublishFunc) {
	s.publish = wrap(s.publish)
}
