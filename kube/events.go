package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// maxEventMessage bounds an Event's message, as the API server bounds
// events.k8s.io notes.
const maxEventMessage = 1024

// PodEvents records Kubernetes Events on one pod (Guardian's own, named by
// the downward API), as client-go's event recorder does for controllers:
// asynchronously, repeated events counted on one object. It needs create
// and patch on events in the pod's namespace.
type PodEvents struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	pod         *corev1.ObjectReference
}

// NewPodEvents records Events on the pod namespace/name, whose UID ties
// them to this incarnation of the pod (kubectl describe pod shows only
// those).
func NewPodEvents(client kubernetes.Interface, namespace, name, uid string) *PodEvents {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events(namespace)})
	return &PodEvents{
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "guardian"}),
		pod:         &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: name, UID: types.UID(uid)},
	}
}

// Warning records a Warning Event with a reason (CamelCase) and a message.
func (e *PodEvents) Warning(reason, message string) {
	e.recorder.Event(e.pod, corev1.EventTypeWarning, reason, truncate(message))
}

// Normal records a Normal Event.
func (e *PodEvents) Normal(reason, message string) {
	e.recorder.Event(e.pod, corev1.EventTypeNormal, reason, truncate(message))
}

// Stop stops recording; Events not yet sent may be lost.
func (e *PodEvents) Stop() { e.broadcaster.Shutdown() }

func truncate(s string) string {
	if len(s) <= maxEventMessage {
		return s
	}
	cut := maxEventMessage - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}
