package ec2sim

import (
	"context"
	"net/http"
	"strings"
)

// maxTagsPerResource is EC2's limit of user tags on one resource.
const maxTagsPerResource = 50

// isAWSTag reports whether key is reserved for AWS (aws: in any case):
// neither CreateTags nor DeleteTags may name it, and DeleteTags without
// Tag.N leaves it.
func isAWSTag(key string) bool { return strings.HasPrefix(strings.ToLower(key), "aws:") }

// tagRequest parses what CreateTags and DeleteTags share: ResourceId.N (at
// least one) and Tag.N, each key checked as EC2 checks it.
func (p params) tagRequest() ([]string, []tagParam, *APIError) {
	ids, aerr := p.list("ResourceId")
	if aerr != nil {
		return nil, nil, aerr
	}
	if len(ids) == 0 {
		return nil, nil, errMissing("ResourceId")
	}
	tags, aerr := p.tagParams()
	if aerr != nil {
		return nil, nil, aerr
	}
	for _, tg := range tags {
		switch {
		case tg.key == "":
			return nil, nil, errInvalidParam("Tag key cannot be empty")
		case len(tg.key) > 128 || len(tg.value) > 256:
			return nil, nil, errInvalidParam("Tag key must be at most 128 and value at most 256 characters")
		case isAWSTag(tg.key):
			return nil, nil, errInvalidParam("Tag keys starting with 'aws:' are reserved for internal use")
		}
	}
	return ids, tags, nil
}

// existAllLocked answers the NotFound error of the first id that names no
// resource. Caller holds m.mu.
func (m *Model) existAllLocked(ids []string) *APIError {
	for _, id := range ids {
		if !m.existsLocked(id) {
			return notFoundFor(id)
		}
	}
	return nil
}

func (m *Model) createTags(_ context.Context, p params) (response, *APIError) {
	ids, tags, aerr := p.tagRequest()
	if aerr != nil {
		return nil, aerr
	}
	if len(tags) == 0 {
		return nil, errMissing("Tag")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if aerr := m.existAllLocked(ids); aerr != nil {
		return nil, aerr
	}
	for _, id := range ids {
		n := len(m.tags[id])
		for _, tg := range tags {
			if _, ok := m.tags[id][tg.key]; !ok {
				n++
			}
		}
		if n > maxTagsPerResource {
			return nil, apiErr(http.StatusBadRequest, "TagLimitExceeded", "The maximum number of tags for resource %s is %d", id, maxTagsPerResource)
		}
	}
	for _, id := range ids {
		for _, tg := range tags {
			m.setTags(id, map[string]string{tg.key: tg.value})
		}
	}
	return &returnResp{Return: true}, nil
}

// deleteTags is EC2's DeleteTags: Tag.N.Key without a value deletes the
// key whatever its value, with a value (even an empty one) only when the
// value matches; no Tag.N deletes every tag but the aws: ones. A key a
// resource lacks is no error. Every resource must exist, else nothing is
// deleted.
func (m *Model) deleteTags(_ context.Context, p params) (response, *APIError) {
	ids, tags, aerr := p.tagRequest()
	if aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if aerr := m.existAllLocked(ids); aerr != nil {
		return nil, aerr
	}
	for _, id := range ids {
		have := m.tags[id]
		if len(tags) == 0 {
			for k := range have {
				if !isAWSTag(k) {
					delete(have, k)
				}
			}
		}
		for _, tg := range tags {
			if v, ok := have[tg.key]; ok && (!tg.hasValue || v == tg.value) {
				delete(have, tg.key)
			}
		}
		if len(have) == 0 {
			delete(m.tags, id)
		}
	}
	m.log.Info("ec2sim DeleteTags", "resources", ids, "tags", len(tags))
	return &returnResp{Return: true}, nil
}
