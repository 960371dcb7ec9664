package kubernetes

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/storetest"
	"github.com/rollback-guardian/guardian/testenv"
)

// The store contract, against a real API server: each subtest gets a fresh
// namespace.
func TestContract(t *testing.T) {
	k := testenv.StartKubernetes(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		ns := fmt.Sprintf("store-%d", n.Add(1))
		if _, err := k.Client.CoreV1().Namespaces().Create(context.Background(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s, err := New(k.Client, ns, "guardian")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestNames(t *testing.T) {
	s, err := New(nil, "default", "guardian")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ bucket, key, want string }{
		{"incidents", "00000000000000000012", "guardian-incidents-00000000000000000012"},
		{"services", "checkout", "guardian-services-checkout"},
		{"services", "Checkout", "guardian-services-checkout-"},
		{"services", "check_out", "guardian-services-check-out-"},
	} {
		got := s.name(tc.bucket, tc.key)
		if len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
			t.Errorf("name(%s, %s) = %s, want prefix %s", tc.bucket, tc.key, got, tc.want)
		}
	}
	if s.name("services", "Checkout") == s.name("services", "checkout") {
		t.Error("keys differing in case map to one ConfigMap")
	}
	for _, bad := range []string{"", "Guardian", "a_b"} {
		if _, err := New(nil, "default", bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}
