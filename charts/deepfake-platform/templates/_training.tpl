{{/* Shared pieces of the training Jobs (training-cache-job.yaml, training-job.yaml). */}}

{{- define "deepfake-platform.trainingName" -}}
{{ include "deepfake-platform.fullname" . }}-training
{{- end }}

{{/* --dataset and --dataset-option arguments: each dataset's path is inside the volume mounted at /data. */}}
{{- define "deepfake-platform.trainingDatasetArgs" -}}
{{- range .Values.training.datasets }}
{{- $kind := splitList "=" . | first }}
- {{ printf "--dataset=%s=/data/%s" $kind (trimPrefix (printf "%s=" $kind) .) | quote }}
{{- end }}
{{- range .Values.training.datasetOptions }}
- {{ printf "--dataset-option=%s" . | quote }}
{{- end }}
{{- end }}

{{- define "deepfake-platform.trainingEnv" -}}
# Read-only root filesystem: caches (torch, matplotlib) go to the /tmp emptyDir.
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: DEEPFAKE_MODEL_NAME
  value: {{ .Values.config.modelName | quote }}
- name: DEEPFAKE_TRAIN_CACHE_ROOT
  value: /data/{{ .Values.training.faceCachePath }}
- name: DEEPFAKE_TRAIN_RUNS_ROOT
  value: /data/runs
{{- if .Values.mlflow.enabled }}
- name: DEEPFAKE_TRAIN_MLFLOW_TRACKING_URI
  value: {{ include "deepfake-platform.mlflowTrackingUri" . | quote }}
{{- end }}
{{- end }}

{{- define "deepfake-platform.trainingVolumeMounts" -}}
{{ include "deepfake-platform.tmpVolumeMount" . }}
- name: data
  mountPath: /data
- name: shm
  mountPath: /dev/shm
{{- end }}

{{- define "deepfake-platform.trainingVolumes" -}}
{{ include "deepfake-platform.tmpVolume" . }}
- name: data
  persistentVolumeClaim:
    claimName: {{ required "training.claimName is required with training.cache.enabled or training.job.enabled" .Values.training.claimName }}
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.training.shmSizeLimit }}
{{- end }}
