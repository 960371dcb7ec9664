package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/rollback-guardian/guardian/testenv"
)

// TestPodEvents: Events land on the pod named, with its UID, type, reason
// and message (cut to the API's bound).
func TestPodEvents(t *testing.T) {
	client := fake.NewClientset()
	e := NewPodEvents(client, "shop", "checkout-7d9f", "0b5e-uid")
	defer e.Stop()
	e.Warning("ConfigInvalid", strings.Repeat("é", 600))
	e.Normal("ConfigLoaded", "loaded")
	var events []corev1.Event
	testenv.EventuallyTrue(t, 10*time.Second, func() bool {
		l, err := client.CoreV1().Events("shop").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		events = l.Items
		return len(events) == 2
	}, "two events")
	byReason := map[string]corev1.Event{}
	for _, ev := range events {
		byReason[ev.Reason] = ev
		if o := ev.InvolvedObject; o.Kind != "Pod" || o.Namespace != "shop" || o.Name != "checkout-7d9f" || o.UID != "0b5e-uid" {
			t.Errorf("event on %+v", o)
		}
		if ev.Source.Component != "guardian" {
			t.Errorf("source %+v", ev.Source)
		}
	}
	w := byReason["ConfigInvalid"]
	if w.Type != corev1.EventTypeWarning || len(w.Message) > maxEventMessage || !strings.HasSuffix(w.Message, "é…") {
		t.Errorf("warning %s, %d bytes: %q", w.Type, len(w.Message), w.Message)
	}
	if n := byReason["ConfigLoaded"]; n.Type != corev1.EventTypeNormal || n.Message != "loaded" {
		t.Errorf("normal %s %q", n.Type, n.Message)
	}
}
