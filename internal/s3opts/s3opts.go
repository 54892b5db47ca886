// Package s3opts reads the store options of an s3:// URL and makes the S3
// client they describe, for the repository's storage and for the clients
// that read a repository straight from its bucket, so that both accept
// the same URLs and reach a store the same way.
//
// The options, all optional, are endpoint=URL and path-style=true for
// stores other than AWS, and region=REGION. Credentials never come from
// the URL, which ends up in configuration files and logs, but from the
// standard AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
// AWS_PROFILE and the shared configuration files, web identity, or the
// instance role).
package s3opts

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Options are what the query of an s3:// URL says about the store.
type Options struct {
	// Endpoint is the store's http:// or https:// URL; empty for AWS.
	Endpoint string
	// Region is the region to sign for; empty for the AWS configuration's.
	Region string
	// PathStyle addresses the bucket in the path, not the host name.
	PathStyle bool
}

// Parse reads the options from a URL's query. Its errors name the
// option; the caller names the URL.
func Parse(query url.Values) (Options, error) {
	var o Options
	for _, name := range slices.Sorted(maps.Keys(query)) {
		vs := query[name]
		if len(vs) != 1 {
			return o, fmt.Errorf("option %s given %d times", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return o, fmt.Errorf("endpoint %q is not an http:// or https:// URL", v)
			}
			o.Endpoint = v
		case "region":
			if v == "" {
				return o, errors.New("empty region")
			}
			o.Region = v
		case "path-style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("path-style=%q is not true or false", v)
			}
			o.PathStyle = b
		default:
			return o, fmt.Errorf("unknown option %q (known: endpoint, region, path-style)", name)
		}
	}
	return o, nil
}

// Client makes the S3 client the options describe, with credentials from
// the standard AWS chain. It does no network I/O: a wrong bucket or
// missing credentials show on the first request.
func (o Options) Client(ctx context.Context) (*s3.Client, error) {
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		if o.Endpoint == "" {
			return nil, errors.New("no region: add ?region=REGION to the URL or set AWS_REGION")
		}
		// Stores other than AWS accept any region; SigV4 still needs one.
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(s *s3.Options) {
		s.UsePathStyle = o.PathStyle
		if o.Endpoint == "" {
			return
		}
		s.BaseEndpoint = aws.String(o.Endpoint)
		// The SDK's default CRC checksums (aws-chunked uploads with
		// trailers, checksums in responses) are not understood or
		// returned by every S3-compatible store; SigV4 already covers
		// an upload's SHA-256, and the TUF hashes what is read. An
		// explicit AWS_REQUEST_CHECKSUM_CALCULATION or
		// AWS_RESPONSE_CHECKSUM_VALIDATION still wins.
		if cfg.RequestChecksumCalculation == aws.RequestChecksumCalculationUnset {
			s.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		}
		if cfg.ResponseChecksumValidation == aws.ResponseChecksumValidationUnset {
			s.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	}), nil
}
