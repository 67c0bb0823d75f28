{{/*
Names, labels and the pieces of pod specs that several templates share.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "deepfake-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, or <release>-<chart> (just <release> when it already
contains the chart name). Kept to 40 characters so that suffixes like "-worker-preprocess" fit in 63.
*/}}
{{- define "deepfake-platform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "deepfake-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods of one component: call with (dict "root" $ "component" "gateway"). */}}
{{- define "deepfake-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deepfake-platform.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of a component's resources: call with (dict "root" $ "component" "gateway"). */}}
{{- define "deepfake-platform.labels" -}}
helm.sh/chart: {{ include "deepfake-platform.chart" .root }}
{{ include "deepfake-platform.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: deepfake-platform
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels matching every pod of this release (NetworkPolicy peers). */}}
{{- define "deepfake-platform.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "deepfake-platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "deepfake-platform.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deepfake-platform.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag of an image block: call with (dict "root" $ "image" .Values.gateway.image). */}}
{{- define "deepfake-platform.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The ConfigMap's name. */}}
{{- define "deepfake-platform.configMapName" -}}
{{- printf "%s-config" (include "deepfake-platform.fullname" .) }}
{{- end }}

{{/* Triton's Service name, which the inference workers call. */}}
{{- define "deepfake-platform.tritonName" -}}
{{- printf "%s-triton" (include "deepfake-platform.fullname" .) }}
{{- end }}

{{/* The claim holding Triton's TensorRT engine cache: an existing one, or the chart's. */}}
{{- define "deepfake-platform.tritonEngineCacheClaim" -}}
{{- default (printf "%s-engine-cache" (include "deepfake-platform.tritonName" .)) .Values.triton.engineCache.persistence.existingClaim }}
{{- end }}

{{/*
Triton's gRPC address for the inference workers. clientLoadBalancing=dns: dns:///<headless Service>, so that gRPC
resolves every ready Triton pod itself instead of pinning its one long-lived HTTP/2 connection to whichever pod
the Service's virtual IP picked; "service": the ClusterIP Service (for a service mesh that balances gRPC per
request).
*/}}
{{- define "deepfake-platform.tritonUrl" -}}
{{- $port := int .Values.triton.ports.grpc }}
{{- if eq .Values.triton.clientLoadBalancing "dns" }}
{{- printf "dns:///%s-headless.%s.svc.%s:%d" (include "deepfake-platform.tritonName" .) .Release.Namespace .Values.clusterDomain $port }}
{{- else }}
{{- printf "%s:%d" (include "deepfake-platform.tritonName" .) $port }}
{{- end }}
{{- end }}

{{/* The name of one worker group's resources: call with (dict "root" $ "group" "preprocess"). */}}
{{- define "deepfake-platform.workerName" -}}
{{- printf "%s-worker-%s" (include "deepfake-platform.fullname" .root) .group }}
{{- end }}

{{/* host:port of Redis, as KEDA's redis scaler wants it. */}}
{{- define "deepfake-platform.redisAddress" -}}
{{- printf "%s:%d" .Values.redis.host (int .Values.redis.port) }}
{{- end }}

{{/*
Environment of the gateway and workers that does not fit a ConfigMap: secrets, and the Redis URL (which holds
the password when there is one; Kubernetes expands $(DEEPFAKE_REDIS_PASSWORD) because it is defined first).
*/}}
{{- define "deepfake-platform.secretEnv" -}}
{{- $scheme := ternary "rediss" "redis" .Values.redis.tls }}
{{- if .Values.redis.existingSecret }}
- name: DEEPFAKE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
- name: DEEPFAKE_REDIS_URL
  value: {{ printf "%s://:$(DEEPFAKE_REDIS_PASSWORD)@%s/%d" $scheme (include "deepfake-platform.redisAddress" .) (int .Values.redis.database) | quote }}
{{- else }}
- name: DEEPFAKE_REDIS_URL
  value: {{ printf "%s://%s/%d" $scheme (include "deepfake-platform.redisAddress" .) (int .Values.redis.database) | quote }}
{{- end }}
- name: DEEPFAKE_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.accessKeyKey }}
- name: DEEPFAKE_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.secretKeyKey }}
- name: DEEPFAKE_WEBHOOK_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.webhookSigningKeyKey }}
{{- end }}

{{/* The writable /tmp every container gets on its read-only root filesystem. */}}
{{- define "deepfake-platform.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolumeSizeLimit }}
{{- end }}

{{- define "deepfake-platform.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Scheduling and image-pull fields shared by every pod spec: call with (dict "root" $ "pod" .Values.gateway). */}}
{{- define "deepfake-platform.podScheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .pod.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Triton's --model-repository for modelRepository.source=s3, from s3.endpoint (Triton's S3 path syntax):
AWS endpoints give s3://<bucket>/<prefix> (the region comes from AWS_DEFAULT_REGION); other S3 servers give
s3://<host>:<port>/<bucket>/<prefix>, with an https:// prefix before the host when the endpoint uses TLS.
*/}}
{{- define "deepfake-platform.tritonS3Repository" -}}
{{- $repository := .Values.triton.modelRepository }}
{{- $bucket := default .Values.s3.bucket $repository.bucket }}
{{- $path := printf "%s/%s" $bucket (trimAll "/" $repository.prefix) | trimSuffix "/" }}
{{- $endpoint := urlParse .Values.s3.endpoint }}
{{- if hasSuffix "amazonaws.com" (regexReplaceAll ":[0-9]+$" $endpoint.host "") }}
{{- printf "s3://%s" $path }}
{{- else }}
{{- $host := $endpoint.host }}
{{- if not (regexMatch ":[0-9]+$" $host) }}
{{- $host = printf "%s:%s" $host (ternary "443" "80" (eq $endpoint.scheme "https")) }}
{{- end }}
{{- printf "s3://%s%s/%s" (ternary "https://" "" (eq $endpoint.scheme "https")) $host $path }}
{{- end }}
{{- end }}

{{/*
Seconds a stopping worker may take: Celery's hard time limit plus a margin, so its warm shutdown always finishes
the task it runs. Also how long autoscalers keep replicas after the queues last asked for them: a task taken off
a queue then may run that long.
*/}}
{{- define "deepfake-platform.workerDrainSeconds" -}}
{{- add (int .Values.config.jobTimeLimitSeconds) (int .Values.workers.shutdownMarginSeconds) }}
{{- end }}

{{/* The queue Celery beat's periodic tasks go to (retention, the stalled-job sweep): DEEPFAKE_QUEUE_WEBHOOKS. */}}
{{- define "deepfake-platform.beatQueue" -}}
{{- default "webhooks" (index .Values.config.extraEnv "DEEPFAKE_QUEUE_WEBHOOKS") }}
{{- end }}

{{/* Fewest replicas of a worker group under KEDA: call with (dict "root" $ "spec" $spec). */}}
{{- define "deepfake-platform.workerMinReplicas" -}}
{{- $min := int .spec.autoscaling.minReplicas }}
{{- if and .root.Values.beat.enabled (has (include "deepfake-platform.beatQueue" .root) .spec.queues) }}
{{- /* Beat sends its tasks every minute: scaling this group to zero would leave them waiting for a pod start. */}}
{{- $min = max 1 $min }}
{{- end }}
{{- $min }}
{{- end }}

{{/* Settings that contradict each other fail the render with a sentence saying what to change. */}}
{{- define "deepfake-platform.validate" -}}
{{- $config := .Values.config }}
{{- range $name := list "DEEPFAKE_JOB_SOFT_TIME_LIMIT_S" "DEEPFAKE_JOB_TIME_LIMIT_S" "DEEPFAKE_STALL_AFTER_S" "DEEPFAKE_MAX_MEDIA_BYTES" "DEEPFAKE_MAX_FILE_BYTES" }}
{{- if hasKey $config.extraEnv $name }}
{{- fail (printf "config.extraEnv.%s: set config.jobSoftTimeLimitSeconds, config.jobTimeLimitSeconds, config.stallAfterSeconds or config.maxMediaBytes instead (the chart derives grace periods and proxy limits from them)" $name) }}
{{- end }}
{{- end }}
{{- if ge (int $config.jobSoftTimeLimitSeconds) (int $config.jobTimeLimitSeconds) }}
{{- fail "config.jobSoftTimeLimitSeconds must be below config.jobTimeLimitSeconds, so a stage can clean up before it is killed" }}
{{- end }}
{{- if le (int $config.stallAfterSeconds) (int $config.jobTimeLimitSeconds) }}
{{- fail "config.stallAfterSeconds must exceed config.jobTimeLimitSeconds: a job whose stage still runs would be re-driven beside it" }}
{{- end }}
{{- if .Values.beat.enabled }}
{{- $queue := include "deepfake-platform.beatQueue" . }}
{{- $consumed := false }}
{{- range $group, $spec := .Values.workers.groups }}
{{- if and $spec.enabled (has $queue $spec.queues) }}
{{- $consumed = true }}
{{- end }}
{{- end }}
{{- if not $consumed }}
{{- fail (printf "beat.enabled: no enabled worker group consumes the queue %q that beat's periodic tasks go to" $queue) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether a worker group loads the model file: with config.inferenceBackend=onnxruntime, every group that consumes a
queue other than the webhooks queue (the stages read the model's metadata). Call with (dict "root" $ "spec" $spec);
"true" or "".
*/}}
{{- define "deepfake-platform.workerLoadsModel" -}}
{{- if eq .root.Values.config.inferenceBackend "onnxruntime" }}
{{- $webhooks := include "deepfake-platform.beatQueue" .root }}
{{- range .spec.queues }}
{{- if ne . $webhooks }}true{{ break }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The MLflow server's name (Deployment, Service and SQLite claim). */}}
{{- define "deepfake-platform.mlflowName" -}}
{{- printf "%s-mlflow" (include "deepfake-platform.fullname" .) }}
{{- end }}

{{/* The tracking URI the training pods use: the MLflow Service inside the cluster. */}}
{{- define "deepfake-platform.mlflowTrackingUri" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "deepfake-platform.mlflowName" .) .Release.Namespace .Values.clusterDomain (int .Values.mlflow.port) }}
{{- end }}

{{/* Host headers MLflow accepts (fnmatch patterns): its Service's names, with and without a port, and mlflow.allowedHosts. */}}
{{- define "deepfake-platform.mlflowAllowedHosts" -}}
{{- $service := include "deepfake-platform.mlflowName" . }}
{{- $hosts := list "localhost" "localhost:*" $service (printf "%s:*" $service) (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s:*" $service .Release.Namespace) (printf "%s.%s.svc*" $service .Release.Namespace) }}
{{- join "," (concat $hosts .Values.mlflow.allowedHosts) }}
{{- end }}
