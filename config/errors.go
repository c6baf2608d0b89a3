package config

import (
	"strconv"
	"strings"
)

// FieldError is one mistake in a configuration. Parse, Load and Validate
// return all of them at once as errors.Join(*FieldError...); use
// errors.As, or range over Unwrap() []error, to get at them.
type FieldError struct {
	File  string // file name as given to Parse or Load; "" from Validate
	Line  int    // 1-based line; 0 when unknown
	Key   string // key path, e.g. "port_forwards[1].to"; "" for syntax errors
	Value string // offending value as written; "" when there is none
	Msg   string // what is wrong
}

// Error formats the error as
//
//	hanat.yaml:12: port_forwards[1].to: "10.0.11.5:70000": port out of range 1-65535
//
// leaving out the parts that are empty.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	if e.Value != "" {
		b.WriteString(strconv.Quote(e.Value) + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Messages shared by the parser and Validate, so a value gets the same
// words whichever of them catches it.
const (
	msgPortRange = "port out of range 1-65535"
	msgRequired  = "missing required key"
)
