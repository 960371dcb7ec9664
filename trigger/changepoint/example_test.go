package changepoint_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/rollback-guardian/guardian/trigger/changepoint"
)

// A version that serves 1% errors for five minutes, then 3%, judged every
// five seconds against a bound of 1% on the baseline's rate.
func Example() {
	d, err := changepoint.New(changepoint.Config{Alpha: 0.001, Window: 30 * time.Minute, MinEffect: 1.5})
	if err != nil {
		panic(err)
	}
	run := d.Start()
	for i := 1; i <= 360; i++ {
		at := time.Duration(i) * 5 * time.Second
		errs := 5.0 // 500 requests a tick, 1%
		if at > 5*time.Minute {
			errs = 15
		}
		res := run.Observe(changepoint.Tick{At: at, Errors: errs, Requests: 500, Q0: 0.01})
		if res.Alarm {
			fmt.Printf("alarm at %v: a change from %v, %.2gx the bound\n", at, res.Start, res.Ratio)
			break
		}
	}
	// The state to save across a restart.
	b, _ := json.Marshal(run.State())
	var s changepoint.State
	_ = json.Unmarshal(b, &s)
	if _, err := d.Resume(s); err != nil {
		panic(err)
	}
	// Output: alarm at 5m15s: a change from 5m0s, 2.9x the bound
}
