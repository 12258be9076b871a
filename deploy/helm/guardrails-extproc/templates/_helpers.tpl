{{/* Names, labels and the pieces both processor variants share. */}}

{{- define "gx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gx.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gx.labels" -}}
{{ include "gx.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "gx.secretName" -}}
{{- .Values.secretEnv.existingSecret | default (printf "%s-env" (include "gx.fullname" .)) -}}
{{- end -}}

{{- define "gx.healthService" -}}envoy.service.ext_proc.v3.ExternalProcessor{{- end -}}

{{/* processor.tls: the Secret, its mount, the name Envoy checks, and the config the
     processor runs with (the chart's config plus extproc.tls and extproc.health_address). */}}
{{- define "gx.tlsDir" -}}/etc/extproc-tls{{- end -}}

{{- define "gx.tlsSecretName" -}}
{{- .Values.processor.tls.secretName | default (printf "%s-tls" (include "gx.fullname" .)) -}}
{{- end -}}

{{- define "gx.tlsHostname" -}}
{{- .Values.processor.tls.hostname | default (printf "%s.%s.svc" (include "gx.fullname" .) .Release.Namespace) -}}
{{- end -}}

{{- define "gx.tlsConfig" -}}
{{- $config := deepCopy .Values.config -}}
{{- $extproc := get $config "extproc" | default dict -}}
{{- $dir := include "gx.tlsDir" . -}}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) -}}
{{- if .Values.processor.tls.clientCertificates -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $dir) -}}
{{- end -}}
{{- $_ := set $extproc "tls" $tls -}}
{{- $_ := set $extproc "health_address" (printf "0.0.0.0:%d" (int .Values.processor.tls.healthPort)) -}}
{{- $_ := set $config "extproc" $extproc -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Settings that must agree across the chart: fail the render, not the cluster. */}}
{{- define "gx.checks" -}}
{{- $extproc := .Values.config.extproc | default dict -}}
{{- if ne (int (get $extproc "max_forwarded_body_bytes")) (int .Values.envoy.bufferLimitBytes) -}}
{{- fail (printf "config.extproc.max_forwarded_body_bytes (%d) must equal envoy.bufferLimitBytes (%d): Envoy answers a bare 413 to a masked body over its buffer limit" (int (get $extproc "max_forwarded_body_bytes")) (int .Values.envoy.bufferLimitBytes)) -}}
{{- end -}}
{{- $headers := int (get $extproc "max_request_headers_bytes" | default 61440) -}}
{{- if ne $headers (mul (int .Values.envoy.maxRequestHeadersKb) 1024) -}}
{{- fail (printf "config.extproc.max_request_headers_bytes (%d) must equal envoy.maxRequestHeadersKb x 1024 (%d): Envoy answers a bare 503 to a query masked past its header limit" $headers (mul (int .Values.envoy.maxRequestHeadersKb) 1024)) -}}
{{- end -}}
{{- if hasKey $extproc "listen_address" -}}
{{- fail "config.extproc.listen_address is set by the chart (--address): leave it out" -}}
{{- end -}}
{{- range $key := list "tls" "health_address" -}}
{{- if hasKey $extproc $key -}}
{{- fail (printf "config.extproc.%s is set by the chart: use processor.tls (the sidecar's unix socket needs no TLS)" $key) -}}
{{- end -}}
{{- end -}}
{{- $p := .Values.processor -}}
{{- if $p.tls.enabled -}}
{{- $workers := int ($p.workers | default 1) -}}
{{- $health := int $p.tls.healthPort -}}
{{- $grpc := int $p.port -}}
{{- if and (lt $health (add $grpc $workers)) (lt $grpc (add $health $workers)) -}}
{{- fail (printf "processor.tls.healthPort %d..%d overlaps the workers' ports %d..%d: give each worker a gRPC port and a health port of its own" $health (sub (add $health $workers) 1) $grpc (sub (add $grpc $workers) 1)) -}}
{{- end -}}
{{- $metrics := int .Values.metrics.port -}}
{{- if and .Values.metrics.enabled (le $health $metrics) (lt $metrics (add $health $workers)) -}}
{{- fail (printf "metrics.port %d is one of the health ports %d..%d (processor.tls.healthPort)" $metrics $health (sub (add $health $workers) 1)) -}}
{{- end -}}
{{- end -}}
{{- $grace := int (get $extproc "shutdown_grace_seconds" | default 10) -}}
{{- if gt (add $grace .Values.processor.preStopSleepSeconds 5) 120 -}}
{{- fail "shutdown_grace_seconds + processor.preStopSleepSeconds must stay under 115 s" -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: preStop sleep + the server's drain grace + 5 s.
     Arguments: root, sleep (the pod's preStop sleep). */}}
{{- define "gx.terminationGrace" -}}
{{- $extproc := .root.Values.config.extproc | default dict -}}
{{- add (int (get $extproc "shutdown_grace_seconds" | default 10)) (int .sleep) 5 -}}
{{- end -}}

{{- define "gx.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "gx.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* The processor container. Arguments: root, address (HOST:PORT or unix:PATH), probes
     (a YAML block), extra volume mounts (a YAML list) and resources. */}}
{{- define "gx.processorContainer" -}}
{{- $root := .root -}}
name: extproc
image: {{ printf "%s:%s" $root.Values.image.repository ($root.Values.image.tag | default $root.Chart.AppVersion) | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
args:
  - extproc
  - serve
  - --config
  - {{ .config | default "/etc/extproc/config.yaml" }}
  - --address
  - {{ .address | quote }}
  {{- if gt (int (.workers | default 1)) 1 }}
  - --workers
  - {{ .workers | quote }}
  {{- end }}
  {{- if $root.Values.metrics.enabled }}
  - --metrics-address
  - {{ printf "0.0.0.0:%v" $root.Values.metrics.port | quote }}
  {{- end }}
{{- with .ports }}
ports:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.secretEnv.names }}
envFrom:
  - secretRef:
      name: {{ include "gx.secretName" $root }}
{{- end }}
{{ .probes }}
resources:
  {{- toYaml .resources | nindent 2 }}
securityContext:
  {{- include "gx.containerSecurityContext" $root | nindent 2 }}
volumeMounts:
  - {name: config, mountPath: /etc/extproc, readOnly: true}
  - {name: tmp, mountPath: /tmp}
  {{- with .mounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The ports of `extproc serve --workers N --address HOST:PORT`: PORT, PORT+1, ... as a
     list of {name, port} (names grpc, grpc-1, ...). Arguments: port, workers. */}}
{{- define "gx.workerPorts" -}}
{{- $out := list -}}
{{- range $i := until (int .workers) -}}
{{- $out = append $out (dict "name" (ternary "grpc" (printf "grpc-%d" $i) (eq $i 0)) "port" (add (int $.port) $i)) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The sockets of `extproc serve --workers N --address unix:DIR/extproc.sock` (one worker:
     that path; more: extproc-0.sock, ...), as a JSON list. Arguments: dir, workers. */}}
{{- define "gx.workerSockets" -}}
{{- $out := list -}}
{{- if eq (int .workers) 1 -}}
{{- $out = list (printf "%s/extproc.sock" .dir) -}}
{{- else -}}
{{- range $i := until (int .workers) -}}
{{- $out = append $out (printf "%s/extproc-%d.sock" $.dir $i) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "gx.metricsAnnotations" -}}
{{- if .Values.metrics.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- define "gx.hpa" -}}
{{- $a := .autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gx.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: {{ .name }}}
  minReplicas: {{ int $a.minReplicas }}
  maxReplicas: {{ int $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ int $a.targetCPUUtilizationPercentage }}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ int $a.scaleDownStabilizationSeconds }}
      policies: [{type: Pods, value: 1, periodSeconds: 60}]
{{- end -}}

{{- define "gx.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gx.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  maxUnavailable: {{ int .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "gx.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end -}}
