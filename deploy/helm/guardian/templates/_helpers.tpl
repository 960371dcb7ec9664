{{/* Names, labels and the pieces shared by the templates. */}}

{{- define "guardian.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: release-chart, or the release name when it contains the chart's name. */}}
{{- define "guardian.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "guardian.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "guardian.selectorLabels" -}}
app.kubernetes.io/name: {{ include "guardian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "guardian.labels" -}}
helm.sh/chart: {{ include "guardian.chart" . }}
{{ include "guardian.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "guardian.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "guardian.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "guardian.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) (ternary "-slim" "" (eq .Values.image.slim true)) }}
{{- end }}
{{- end }}

{{/*
With image.slim, fail on what the slim image left out (it is built with
-tags nokubernetes): cluster mode, the RBAC of Kubernetes features, and
config keys that need the Kubernetes API. Guardian would refuse such a
config itself; the chart says so before anything is installed.
*/}}
{{- define "guardian.slimCheck" -}}
{{- if .Values.image.slim }}
{{- $full := "the slim image (built with -tags nokubernetes) does not talk to the Kubernetes API; use the full image (image.slim: false)" }}
{{- if include "guardian.cluster" . }}
{{- fail (printf "image.slim: cluster mode (cluster.enabled, or replicas > 1): %s" $full) }}
{{- end }}
{{- range $flag := list "deployDetection" "rolloutDetection" "kubernetesExecutor" "argoRollouts" "helm" "leaderElection" "stateConfigMaps" }}
{{- if index $.Values.rbac $flag }}
{{- fail (printf "image.slim: rbac.%s: %s" $flag $full) }}
{{- end }}
{{- end }}
{{- $cfg := .Values.config | default dict }}
{{- if dig "global" "cluster" nil $cfg }}
{{- fail (printf "image.slim: config.global.cluster: %s" $full) }}
{{- end }}
{{- range $i, $s := $cfg.services | default list }}
{{- if dig "deploy" "kubernetes" nil $s }}
{{- fail (printf "image.slim: config.services[%d].deploy.kubernetes: %s" $i $full) }}
{{- end }}
{{- range $step := list "application" "database" }}
{{- range $x := list "kubernetes" "argo_rollouts" "helm" }}
{{- if dig "rollback" $step $x nil $s }}
{{- fail (printf "image.slim: config.services[%d].rollback.%s.%s: %s" $i $step $x $full) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Non-empty when the ServiceMonitor is rendered: it needs the Service. */}}
{{- define "guardian.serviceMonitorRendered" -}}
{{- if and .Values.serviceMonitor.enabled .Values.service.enabled (or (eq .Values.mode "standalone") .Values.sidecar.podSelector) }}true{{ end }}
{{- end }}

{{/*
guardian.job is the job label Prometheus gives Guardian's scrape:
monitoring.rules.job, else the Service's name with the chart's
ServiceMonitor, namespace/name with its PodMonitor (the Prometheus
Operator's defaults), else "guardian", as deploy/monitoring/alerts.yaml
assumes.
*/}}
{{- define "guardian.job" -}}
{{- if .Values.monitoring.rules.job }}
{{- .Values.monitoring.rules.job }}
{{- else if include "guardian.serviceMonitorRendered" . }}
{{- include "guardian.fullname" . }}
{{- else if .Values.podMonitor.enabled }}
{{- printf "%s/%s" .Release.Namespace (include "guardian.fullname" .) }}
{{- else }}guardian{{ end }}
{{- end }}

{{/* Non-empty when the write API has tokens. */}}
{{- define "guardian.authEnabled" -}}
{{- if or .Values.auth.tokens .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{/* Non-empty when secret files are mounted. */}}
{{- define "guardian.secretsEnabled" -}}
{{- if or .Values.secrets.files .Values.secrets.existingSecret }}true{{ end }}
{{- end }}

{{/* Non-empty when the chart renders its own Secret. */}}
{{- define "guardian.ownSecret" -}}
{{- if or (and .Values.auth.tokens (not .Values.auth.existingSecret)) (and .Values.secrets.files (not .Values.secrets.existingSecret)) }}true{{ end }}
{{- end }}

{{/* The data of the chart's own Secret: the tokens file and the secret files. */}}
{{- define "guardian.secretData" -}}
{{- if and .Values.auth.tokens (not .Values.auth.existingSecret) }}
{{- if hasKey .Values.secrets.files "tokens" }}
{{- fail "secrets.files must not hold a file named \"tokens\" when auth.tokens is set" }}
{{- end }}
{{- $lines := list }}
{{- range $name, $token := .Values.auth.tokens }}
{{- if or (contains ":" $name) (lt (len (toString $token)) 16) }}
{{- fail (printf "auth.tokens.%s: want a name without ':' and a token of 16 characters or more" $name) }}
{{- end }}
{{- $lines = append $lines (printf "%s:%s" $name (toString $token)) }}
{{- end }}
tokens: {{ printf "%s\n" (join "\n" $lines) | b64enc | quote }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- range $name, $content := .Values.secrets.files }}
{{ $name }}: {{ toString $content | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster mode (Lease and state ConfigMaps): asked for, or implied by several standalone replicas. */}}
{{- define "guardian.cluster" -}}
{{- if or .Values.cluster.enabled (and (eq .Values.mode "standalone") (gt (int .Values.replicas) 1)) }}true{{ end }}
{{- end }}

{{/* Non-empty when the sidecar records Events on its pod (the slim image cannot). */}}
{{- define "guardian.podEvents" -}}
{{- if and (eq .Values.mode "sidecar") .Values.sidecar.events (not .Values.image.slim) }}true{{ end }}
{{- end }}

{{/*
guardian.shards is the number of shards the replicas split the services
into, "" when one leader drives them all: cluster.shards, or for "auto" with
several standalone replicas (a sidecar's replicas are the application's)
about 20 a replica, rounded up to a multiple of 64 (64 for
up to 3 replicas, 256 for 10) so that most changes of replicas keep it.
*/}}
{{- define "guardian.shards" -}}
{{- if include "guardian.cluster" . -}}
{{- $s := toString .Values.cluster.shards -}}
{{- if eq $s "auto" -}}
{{- $r := int .Values.replicas -}}
{{- if and (gt $r 1) (eq .Values.mode "standalone") }}{{ mul 64 (div (add (mul 20 $r) 63) 64) }}{{ end -}}
{{- else if gt (int $s) 0 }}{{ int $s }}{{ end -}}
{{- end -}}
{{- end }}

{{- define "guardian.leaderElection" -}}
{{- if or .Values.rbac.leaderElection (include "guardian.cluster" .) }}true{{ end }}
{{- end }}

{{- define "guardian.stateConfigMaps" -}}
{{- if or .Values.rbac.stateConfigMaps (include "guardian.cluster" .) }}true{{ end }}
{{- end }}

{{/*
Guardian's config.yaml: the config value with the settings the chart owns
(listen address, state directory, tokens file) put in, and in cluster mode
global.cluster's lease, state prefix and namespace where the config leaves
them out.
*/}}
{{- define "guardian.config" -}}
{{- include "guardian.slimCheck" . }}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $global := deepCopy (get $cfg "global" | default dict) }}
{{- $_ := set $global "listen_address" (printf "0.0.0.0:%d" (int .Values.containerPort)) }}
{{- $_ := set $global "state_dir" .Values.persistence.mountPath }}
{{- if include "guardian.authEnabled" . }}
{{- $auth := deepCopy (get $global "auth" | default dict) }}
{{- $_ := set $auth "tokens_file" (printf "%s/tokens" (trimSuffix "/" .Values.auth.mountPath)) }}
{{- $_ := set $global "auth" $auth }}
{{- end }}
{{- if include "guardian.cluster" . }}
{{- $fullname := include "guardian.fullname" . }}
{{- $cluster := deepCopy (get $global "cluster" | default dict) }}
{{- $cluster = merge $cluster (dict "lease_name" $fullname "state_prefix" $fullname "namespace" .Release.Namespace) }}
{{- with include "guardian.shards" . }}
{{- $cluster = merge $cluster (dict "shards" (int .)) }}
{{- end }}
{{- $_ := set $global "cluster" $cluster }}
{{- end }}
{{- $_ := set $cfg "global" $global }}
{{- toYaml $cfg }}
{{- end }}

{{/*
RBAC rules for the watched namespaces (or the cluster), one per flag. The
test suite asserts that each flag adds exactly these.
*/}}
{{- define "guardian.rbac.watchedRules" -}}
{{- if .Values.rbac.deployDetection }}
# rollout/kubernetes: an informer on Deployments.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.rbac.rolloutDetection }}
# rollout/kubernetes: an informer on Argo Rollouts.
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.rbac.kubernetesExecutor }}
# executor/kubernetes: read a workload and patch its template back;
# ReplicaSets and ControllerRevisions hold the earlier templates.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["replicasets", "controllerrevisions"]
  verbs: ["list"]
# Blue-green: switch the Service's selector, then wait until its endpoints
# are the selected pods.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
{{- end }}
{{- if .Values.rbac.argoRollouts }}
# executor/argorollouts: abort through the status subresource, undo by
# patching the template of an earlier ReplicaSet back.
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "patch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
{{- end }}
{{- if and .Values.rbac.helm (not .Values.rbac.helmClusterWide) }}
{{ include "guardian.rbac.helmRules" . }}
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The helm executor's rules: Helm's release records are Secrets of the
release's namespace (the release's own resources come from extraRules).
*/}}
{{- define "guardian.rbac.helmRules" -}}
# The helm executor: Helm's release records (the release's own resources
# come from extraRules).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "update", "delete"]
{{- end }}

{{/* RBAC rules for the release namespace only. */}}
{{- define "guardian.rbac.localRules" -}}
{{- if include "guardian.leaderElection" . }}
{{- if include "guardian.shards" . }}
# A Lease per shard and per replica: listed together, created, renewed,
# and a replica's own deleted when it leaves.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "create", "update", "delete"]
{{- else }}
# client-go's leader election on a Lease.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}
{{- end }}
{{- if include "guardian.podEvents" . }}
# guardian run --config.wait-valid: an Event on its pod at each configuration
# that does not load (client-go's event recorder creates, then patches the count).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
{{- if include "guardian.stateConfigMaps" . }}
# store/kubernetes: one ConfigMap per key, compare-and-swap on resourceVersion.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "update", "delete"]
{{- end }}
{{- end }}

{{/* guardian.webConfigEnabled is "true" when Guardian gets a --web.config.file. */}}
{{- define "guardian.webConfigEnabled" -}}
{{- if or .Values.web.config .Values.web.existingSecret }}true{{ end }}
{{- end }}

{{/* guardian.webScheme is HTTPS when the web config serves TLS, HTTP otherwise. */}}
{{- define "guardian.webScheme" -}}
{{- if or (and .Values.web.config (hasKey .Values.web.config "tls_server_config")) .Values.web.tlsSecret }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* guardian.probe renders a probe, its httpGet on HTTPS when Guardian serves TLS (unless it says a scheme). */}}
{{- define "guardian.probe" -}}
{{- $probe := deepCopy .probe -}}
{{- if and $probe.httpGet (not $probe.httpGet.scheme) (eq (include "guardian.webScheme" .root) "HTTPS") -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end }}
