// Command enrollgate runs the company passcode service: `enrollgate serve`
// (the default) starts it, with an embedded JetStream server unless
// --nats-url names external ones.
//
// It is the only place that reads flags and environment; internal/app
// wires the service from the Config they fill.
package main
