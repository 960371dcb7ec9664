//go:build !nohelm

package config

// helmLeftOut is "nohelm" in builds without the helm executor.
const helmLeftOut = ""
