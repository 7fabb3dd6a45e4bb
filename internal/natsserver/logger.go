package natsserver

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

var _ server.Logger = (*Logger)(nil)

// Logger bridges nats-server's log into zerolog. Fatalf logs at error level
// and records the message (see Fatal) instead of exiting.
type Logger struct {
	log zerolog.Logger

	mu    sync.Mutex
	fatal string
}

// NewLogger returns a bridge writing to log.
func NewLogger(log zerolog.Logger) *Logger { return &Logger{log: log} }

// Noticef implements server.Logger.
func (l *Logger) Noticef(format string, v ...any) { l.log.Info().Msgf(format, v...) }

// Warnf implements server.Logger.
func (l *Logger) Warnf(format string, v ...any) { l.log.Warn().Msgf(format, v...) }

// Errorf implements server.Logger.
func (l *Logger) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }

// Fatalf implements server.Logger without exiting: the server stops what it
// was starting, and Start reports the message as its error.
func (l *Logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	l.log.Error().Bool("fatal", true).Msg(msg)
}

// Debugf implements server.Logger.
func (l *Logger) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }

// Tracef implements server.Logger.
func (l *Logger) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }

// Fatal returns the first fatal message logged, or "".
func (l *Logger) Fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// levels returns whether debug and trace lines would be written at all, so
// that the server does not format lines zerolog would drop.
func levels(log zerolog.Logger) (debug, trace bool) {
	lvl := max(log.GetLevel(), zerolog.GlobalLevel())
	return lvl <= zerolog.DebugLevel, lvl <= zerolog.TraceLevel
}
