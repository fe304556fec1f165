// ctr-udf-go: scalar functions for click-through-rate reporting.
//
//	ctr_bucket(clicks int, impressions int) -> float   smoothed CTR
//	hash_bucket(user_id str, n int) -> int             stable bucket in [0, n)
//	normalize_device(device str) -> str                mobile|tablet|desktop|tv|bot|other
//
// Config (optional): {"prior_clicks": 1, "prior_impressions": 100}, the
// Beta prior used for smoothing.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	sdk "streamhost.dev/sdk"
)

// The prior: with no data the CTR is priorClicks/priorImpressions, and the
// estimate moves toward clicks/impressions as impressions grow.
var priorClicks, priorImpressions = 1.0, 100.0

func init() {
	sdk.OnInit(configure)
	sdk.RegisterUDF("ctr_bucket", []sdk.Type{sdk.Int, sdk.Int}, sdk.Float, ctrBucket)
	sdk.RegisterUDF("hash_bucket", []sdk.Type{sdk.Str, sdk.Int}, sdk.Int, hashBucket)
	sdk.RegisterUDF("normalize_device", []sdk.Type{sdk.Str}, sdk.Str, normalizeDevice)
}

// c-shared builds need a main package; main itself is never run.
func main() {}

func configure(config string) error {
	var c struct {
		PriorClicks      *float64 `json:"prior_clicks"`
		PriorImpressions *float64 `json:"prior_impressions"`
	}
	if config != "" && config != "null" {
		if err := json.Unmarshal([]byte(config), &c); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if c.PriorClicks != nil {
		priorClicks = *c.PriorClicks
	}
	if c.PriorImpressions != nil {
		priorImpressions = *c.PriorImpressions
	}
	if priorClicks < 0 || priorImpressions <= 0 || priorClicks > priorImpressions {
		return fmt.Errorf("config: need 0 <= prior_clicks <= prior_impressions and prior_impressions > 0, got %v/%v",
			priorClicks, priorImpressions)
	}
	sdk.Info("ctr prior", "prior_clicks", fmt.Sprint(priorClicks), "prior_impressions", fmt.Sprint(priorImpressions))
	return nil
}

func ctrBucket(args []sdk.Scalar) (sdk.Scalar, error) {
	if args[0].IsNull() || args[1].IsNull() {
		return sdk.NullValue(), nil
	}
	clicks, _ := args[0].Int()
	impressions, _ := args[1].Int()
	switch {
	case clicks < 0 || impressions < 0:
		return sdk.Scalar{}, fmt.Errorf("negative count (clicks %d, impressions %d)", clicks, impressions)
	case clicks > impressions:
		return sdk.Scalar{}, fmt.Errorf("more clicks (%d) than impressions (%d)", clicks, impressions)
	}
	return sdk.FloatValue((float64(clicks) + priorClicks) / (float64(impressions) + priorImpressions)), nil
}

func hashBucket(args []sdk.Scalar) (sdk.Scalar, error) {
	if args[0].IsNull() || args[1].IsNull() {
		return sdk.NullValue(), nil
	}
	id, _ := args[0].Str()
	n, _ := args[1].Int()
	if n <= 0 {
		return sdk.Scalar{}, fmt.Errorf("bucket count must be positive, got %d", n)
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return sdk.IntValue(int64(h.Sum64() % uint64(n))), nil
}

var errEmptyDevice = errors.New("empty device string")

func normalizeDevice(args []sdk.Scalar) (sdk.Scalar, error) {
	if args[0].IsNull() {
		return sdk.NullValue(), nil
	}
	raw, _ := args[0].Str()
	d := strings.ToLower(strings.TrimSpace(raw))
	if d == "" {
		return sdk.Scalar{}, errEmptyDevice
	}
	return sdk.StrValue(deviceClass(d)), nil
}

func deviceClass(d string) string {
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(d, w) {
				return true
			}
		}
		return false
	}
	switch {
	case has("bot", "crawler", "spider"):
		return "bot"
	case has("ipad", "tablet", "kindle"):
		return "tablet"
	case has("tv", "roku", "chromecast", "firetv"):
		return "tv"
	case has("mobile", "phone", "android", "ios"):
		return "mobile"
	case has("desktop", "windows", "macintosh", "mac os", "linux", "pc"):
		return "desktop"
	}
	return "other"
}
