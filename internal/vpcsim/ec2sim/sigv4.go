package ec2sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SigV4 verification of EC2 requests (AWS4-HMAC-SHA256 in the
// Authorization header), written from the published algorithm: the
// canonical request is rebuilt from what arrived, using the header list the
// client says it signed.

const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	amzDateFormat  = "20060102T150405Z"
	maxClockSkew   = 15 * time.Minute
)

type sigV4Auth struct {
	accessKeyID   string
	date          string // yyyymmdd of the scope
	region        string
	service       string
	signedHeaders []string
	signature     string
}

func authFailure(format string, args ...any) *APIError {
	return apiErr(http.StatusUnauthorized, "AuthFailure", format, args...)
}

func parseAuthorization(h string) (sigV4Auth, *APIError) {
	var a sigV4Auth
	alg, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || alg != sigV4Algorithm {
		return a, authFailure("Unsupported Authorization scheme; expected %s", sigV4Algorithm)
	}
	var cred, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, authFailure("Malformed Authorization header")
		}
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			a.signature = v
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || signed == "" || a.signature == "" {
		return a, authFailure("Malformed Authorization header: Credential, SignedHeaders and Signature are required")
	}
	a.accessKeyID, a.date, a.region, a.service = scope[0], scope[1], scope[2], scope[3]
	a.signedHeaders = strings.Split(signed, ";")
	if !slices.IsSorted(a.signedHeaders) || !slices.Contains(a.signedHeaders, "host") {
		return a, authFailure("SignedHeaders must be sorted and include host")
	}
	return a, nil
}

// verifySigV4 checks r (whose body was read into body) against creds,
// signed for service (ec2, autoscaling) in region.
func verifySigV4(r *http.Request, body []byte, creds Credentials, service, region string, now time.Time) *APIError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return authFailure("AWS was not able to validate the provided access credentials: the request is not signed")
	}
	a, aerr := parseAuthorization(h)
	if aerr != nil {
		return aerr
	}
	if subtle.ConstantTimeCompare([]byte(a.accessKeyID), []byte(creds.AccessKeyID)) != 1 {
		return authFailure("AWS was not able to validate the provided access credentials")
	}
	if a.service != service {
		return authFailure("Credential should be scoped to correct service: '%s'.", service)
	}
	if a.region != region {
		return authFailure("Credential should be scoped to a valid region, not '%s'.", a.region)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	var t time.Time
	var err error
	if amzDate != "" {
		t, err = time.Parse(amzDateFormat, amzDate)
	} else if d := r.Header.Get("Date"); d != "" {
		t, err = http.ParseTime(d)
		amzDate = t.UTC().Format(amzDateFormat)
	} else {
		return authFailure("The request must contain an X-Amz-Date or Date header")
	}
	if err != nil {
		return authFailure("Invalid request date %q", amzDate)
	}
	if t.Format("20060102") != a.date {
		return authFailure("Credential date %s does not match the request date %s", a.date, amzDate)
	}
	if skew := now.Sub(t); skew > maxClockSkew || skew < -maxClockSkew {
		return apiErr(http.StatusBadRequest, "RequestExpired",
			"Request has expired. Timestamp date is %s, server time is %s", t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	bodyHash := sha256Hex(body)
	if payloadHash == "" {
		payloadHash = bodyHash
	} else if payloadHash != "UNSIGNED-PAYLOAD" && payloadHash != bodyHash {
		return authFailure("The provided X-Amz-Content-Sha256 does not match the request body")
	}

	var cr strings.Builder
	cr.WriteString(r.Method + "\n")
	cr.WriteString(canonicalURI(r.URL) + "\n")
	cr.WriteString(canonicalQuery(r.URL.RawQuery) + "\n")
	for _, name := range a.signedHeaders {
		v, ok := headerValue(r, name)
		if !ok {
			return authFailure("Signed header %s is missing from the request", name)
		}
		cr.WriteString(name + ":" + v + "\n")
	}
	cr.WriteString("\n" + strings.Join(a.signedHeaders, ";") + "\n")
	cr.WriteString(payloadHash)

	scope := a.date + "/" + a.region + "/" + a.service + "/aws4_request"
	toSign := sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex([]byte(cr.String()))
	key := hmacSHA256([]byte("AWS4"+creds.SecretAccessKey), a.date)
	key = hmacSHA256(key, a.region)
	key = hmacSHA256(key, a.service)
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(a.signature))) != 1 {
		return authFailure("AWS was not able to validate the provided access credentials")
	}
	return nil
}

// headerValue is the canonical value of a signed header: values joined by
// ",", whitespace trimmed and runs of spaces collapsed.
func headerValue(r *http.Request, name string) (string, bool) {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "content-length":
		if v := r.Header.Values("Content-Length"); len(v) > 0 {
			vals = slices.Clone(v)
		} else if r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vals = slices.Clone(r.Header.Values(name))
	}
	if len(vals) == 0 {
		return "", false
	}
	for i, v := range vals {
		vals[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(vals, ","), true
}

// canonicalURI: the escaped path, URI-encoded once more (every service but
// S3), "/" when empty.
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return uriEncode(p, false)
}

// canonicalQuery sorts parameters by name, then value, each URI-encoded.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		uk, err1 := url.QueryUnescape(k)
		uv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			uk, uv = k, v // the parser rejects it later; keep verification total
		}
		pairs = append(pairs, kv{uriEncode(uk, true), uriEncode(uv, true)})
	}
	slices.SortFunc(pairs, func(a, b kv) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.k + "=" + p.v
	}
	return strings.Join(out, "&")
}

// uriEncode percent-encodes everything but A-Z a-z 0-9 - _ . ~ (and / when
// encodeSlash is false), with upper-case hex, as SigV4 requires.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
