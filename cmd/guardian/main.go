// Command guardian stops bad deploys: it watches a service's error rate and
// latency after a deploy, judges the new version against the one before, and
// declares an incident when a trigger fires.
package main

import (
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
