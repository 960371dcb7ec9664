{{/*
The Guardian container and its volumes, used by the standalone Deployment and
by sidecar mode. A parent chart that has this chart as a dependency (with
mode: sidecar) adds Guardian to its own pod template with:

  metadata:
    annotations:
      {{- include "guardian.sidecar.annotations" .Subcharts.guardian | nindent 8 }}
  spec:
    containers:
      - name: app
        ...
      {{- include "guardian.sidecar" .Subcharts.guardian | nindent 6 }}
    volumes:
      {{- include "guardian.sidecar.volumes" .Subcharts.guardian | nindent 6 }}

Volume names start with "guardian-" so that they do not clash with the pod's own.
*/}}

{{/* guardian.sidecar is the container, as one item of a containers list. */}}
{{- define "guardian.sidecar" -}}
- name: guardian
  image: {{ include "guardian.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - run
    - --config.file=/etc/guardian/config/config.yaml
    - --log.level={{ .Values.logLevel }}
    - --log.format={{ .Values.logFormat }}
    {{- if eq .Values.mode "sidecar" }}
    # A configuration that does not load leaves Guardian waiting for a valid
    # one instead of exiting: the application's pod stays up and Ready.
    - --config.wait-valid
    {{- end }}
    {{- if include "guardian.webConfigEnabled" . }}
    - --web.config.file={{ .Values.web.mountPath }}/{{ if .Values.web.existingSecret }}{{ .Values.web.existingSecretKey }}{{ else }}web-config.yml{{ end }}
    {{- end }}
    {{- if ne .Values.web.reload "loopback" }}
    - --web.reload={{ .Values.web.reload }}
    {{- end }}
    {{- if ne .Values.web.readAuth "open" }}
    - --web.read-auth={{ .Values.web.readAuth }}
    {{- end }}
    {{- range .Values.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ int .Values.containerPort }}
      protocol: TCP
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: POD_UID
      valueFrom:
        fieldRef:
          fieldPath: metadata.uid
    {{- with .Values.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.livenessProbe }}
  livenessProbe:
    {{- include "guardian.probe" (dict "probe" . "root" $) | nindent 4 }}
  {{- end }}
  {{- /*
  A pod is Ready only when every container is. In sidecar mode Guardian's
  readiness is the application's too, so its probe asks /-/healthy (the
  process serves), not /-/ready (a configuration loaded, and in cluster
  mode this replica leads): neither a bad configuration nor a follower
  takes the application's pods out of their Services.
  */}}
  {{- with (eq .Values.mode "sidecar" | ternary .Values.sidecar.readinessProbe .Values.readinessProbe) }}
  readinessProbe:
    {{- include "guardian.probe" (dict "probe" . "root" $) | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: guardian-config
      mountPath: /etc/guardian/config
      readOnly: true
    - name: guardian-state
      mountPath: {{ .Values.persistence.mountPath }}
    - name: guardian-tmp
      mountPath: /tmp
    {{- if include "guardian.authEnabled" . }}
    - name: guardian-auth
      mountPath: {{ .Values.auth.mountPath }}
      readOnly: true
    {{- end }}
    {{- if include "guardian.secretsEnabled" . }}
    - name: guardian-secrets
      mountPath: {{ .Values.secrets.mountPath }}
      readOnly: true
    {{- end }}
    {{- if include "guardian.webConfigEnabled" . }}
    - name: guardian-web
      mountPath: {{ .Values.web.mountPath }}
      readOnly: true
    {{- end }}
    {{- if .Values.web.tlsSecret }}
    - name: guardian-web-tls
      mountPath: {{ .Values.web.tlsMountPath }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* guardian.sidecar.volumes are the container's volumes, as items of a volumes list. */}}
{{- define "guardian.sidecar.volumes" -}}
{{- $fullname := include "guardian.fullname" . -}}
- name: guardian-config
  configMap:
    name: {{ $fullname }}
- name: guardian-state
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default $fullname }}
  {{- else }}
  emptyDir:
    {{- with .Values.persistence.emptyDirSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
  {{- end }}
- name: guardian-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if include "guardian.authEnabled" . }}
- name: guardian-auth
  secret:
    secretName: {{ .Values.auth.existingSecret | default $fullname }}
    items:
      - key: {{ if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens{{ end }}
        path: tokens
{{- end }}
{{- if include "guardian.secretsEnabled" . }}
- name: guardian-secrets
  secret:
    secretName: {{ .Values.secrets.existingSecret | default $fullname }}
    {{- if not .Values.secrets.existingSecret }}
    items:
      {{- range $name, $_ := .Values.secrets.files }}
      - key: {{ $name }}
        path: {{ $name }}
      {{- end }}
    {{- end }}
{{- end }}
{{- if include "guardian.webConfigEnabled" . }}
- name: guardian-web
  secret:
    secretName: {{ .Values.web.existingSecret | default (printf "%s-web" $fullname) }}
{{- end }}
{{- if .Values.web.tlsSecret }}
- name: guardian-web-tls
  secret:
    secretName: {{ .Values.web.tlsSecret }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
guardian.sidecar.annotations are the pod annotations: a checksum of the
chart's Secret, so that changed tokens or keys restart the pod (the config
itself is reloaded in place and needs no restart).
*/}}
{{- define "guardian.sidecar.annotations" -}}
{{- if include "guardian.ownSecret" . -}}
checksum/guardian-secret: {{ include "guardian.secretData" . | sha256sum }}
{{- end }}
{{- end }}
