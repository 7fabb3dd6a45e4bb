// Command enrollgate runs the company passcode service: `enrollgate serve`
// (the default) starts it, with an embedded JetStream server unless
// --nats-url names external ones.
//
// This is the composition root: the only place that reads flags and
// environment, and the place where the adapters are wired together.
package main
