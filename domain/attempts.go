package domain

// attemptLogSize is how many recent attempt IDs a site remembers. A frontend
// retries within seconds, so a short memory is enough; it bounds the memory of
// a site that sees many enrollments.
const attemptLogSize = 64

type attemptRecord struct {
	passcodeID string
	digest     []byte
	ok         bool
}

// attemptLog remembers the most recent attempt IDs, oldest overwritten first.
type attemptLog struct {
	ids  []string
	recs map[string]attemptRecord
	next int
}

func (l *attemptLog) add(id string, r attemptRecord) {
	if id == "" {
		return
	}
	if l.recs == nil {
		l.recs = make(map[string]attemptRecord)
	}
	if _, ok := l.recs[id]; ok {
		l.recs[id] = r
		return
	}
	if len(l.ids) < attemptLogSize {
		l.ids = append(l.ids, id)
	} else {
		delete(l.recs, l.ids[l.next])
		l.ids[l.next] = id
		l.next = (l.next + 1) % attemptLogSize
	}
	l.recs[id] = r
}

func (l *attemptLog) lookup(id string) (attemptRecord, bool) {
	r, ok := l.recs[id]
	return r, ok
}
