package consume

import (
	"github.com/ThreeDotsLabs/watermill"
	"github.com/rs/zerolog"
)

// wmLogger adapts zerolog to watermill.LoggerAdapter. watermill logs every
// received message at info ("got msg"), so its info lines go to debug here.
// Its errors stay errors, except those about one message ("Handler returned
// error", with a message_uuid field): the subscriber logs every failed
// hand-over itself, once, with the event's sequence, the attempt and the
// error, at warn and then error level.
type wmLogger struct{ log zerolog.Logger }

var _ watermill.LoggerAdapter = wmLogger{}

func newWMLogger(log zerolog.Logger) wmLogger { return wmLogger{log: log} }

func (l wmLogger) Error(msg string, err error, fields watermill.LogFields) {
	if _, perMessage := fields["message_uuid"]; perMessage {
		l.log.Debug().Err(err).Fields(map[string]any(fields)).Msg(msg)
		return
	}
	l.log.Error().Err(err).Fields(map[string]any(fields)).Msg(msg)
}

func (l wmLogger) Info(msg string, fields watermill.LogFields) {
	l.log.Debug().Fields(map[string]any(fields)).Msg(msg)
}

func (l wmLogger) Debug(msg string, fields watermill.LogFields) {
	l.log.Debug().Fields(map[string]any(fields)).Msg(msg)
}

func (l wmLogger) Trace(msg string, fields watermill.LogFields) {
	l.log.Trace().Fields(map[string]any(fields)).Msg(msg)
}

func (l wmLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return wmLogger{log: l.log.With().Fields(map[string]any(fields)).Logger()}
}
