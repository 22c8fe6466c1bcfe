// compose-lint checks docker/ without a container runtime: the compose files load and
// validate with compose-go (the library `docker compose` itself uses, with the Compose
// Specification's schema), every other YAML file parses, every eod service has a health
// check, resource limits, a restart policy and an OTLP endpoint, and every Grafana dashboard
// uses the provisioned datasource.
//
//	go run ./scripts/compose-lint docker
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"gopkg.in/yaml.v3"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "compose-lint: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: compose-lint DOCKER_DIR")
	}
	dir := os.Args[1]
	// Secrets the files require from the environment: any value makes them resolve.
	env := []string{"MSSQL_SA_PASSWORD=lint", "MINIO_ROOT_PASSWORD=lint"}
	for _, files := range [][]string{
		{"compose.yaml"},
		{"compose.yaml", "compose.burst.yaml"},
	} {
		paths := make([]string, len(files))
		for i, f := range files {
			paths[i] = filepath.Join(dir, f)
		}
		options, err := cli.NewProjectOptions(paths,
			cli.WithWorkingDirectory(dir), cli.WithEnv(env), cli.WithName("eod"))
		if err != nil {
			fail("%v: %v", files, err)
		}
		project, err := options.LoadProject(context.Background())
		if err != nil {
			fail("%v: %v", files, err)
		}
		names := project.ServiceNames()
		sort.Strings(names)
		for _, want := range []string{"kafka", "redis", "sqlserver", "minio", "prometheus",
			"grafana", "eod-ingest", "eod-run-0", "eod-run-1", "simulator",
			"kafka-exporter", "redis-exporter", "kafka-ui", "jaeger"} {
			if !contains(names, want) {
				fail("%v: no %s service (have %v)", files, want, names)
			}
		}
		for _, name := range []string{"eod-run-0", "eod-run-1"} {
			service := project.Services[name]
			command := strings.Join(service.Command, " ")
			if !strings.Contains(command, "-n 2") {
				fail("%s runs %q: expected two timely processes", name, command)
			}
		}
		for _, name := range names {
			service := project.Services[name]
			if service.Image != "eod:latest" {
				continue
			}
			if service.HealthCheck == nil || service.HealthCheck.Disable || len(service.HealthCheck.Test) == 0 ||
				service.HealthCheck.Test[0] == "NONE" {
				fail("%s: no health check", name)
			}
			if service.Deploy == nil || service.Deploy.Resources.Limits == nil ||
				service.Deploy.Resources.Limits.NanoCPUs == 0 || service.Deploy.Resources.Limits.MemoryBytes == 0 {
				fail("%s: no CPU and memory limits", name)
			}
			if service.Restart == "" {
				fail("%s: no restart policy", name)
			}
			if endpoint, ok := service.Environment["EOD_OTLP_ENDPOINT"]; !ok || endpoint == nil || *endpoint == "" {
				fail("%s: spans go nowhere (no EOD_OTLP_ENDPOINT)", name)
			}
		}
		fmt.Printf("ok %v: %d services\n", files, len(names))
	}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
			var doc any
			text, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := yaml.Unmarshal(text, &doc); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if doc == nil {
				return fmt.Errorf("%s: empty", path)
			}
			fmt.Printf("ok %s\n", path)
		}
		return nil
	})
	if err != nil {
		fail("%v", err)
	}
	checkGrafanaDatasource(dir)
}

func checkGrafanaDatasource(dir string) {
	var provisioned struct {
		Datasources []struct {
			UID string `yaml:"uid"`
		} `yaml:"datasources"`
	}
	text, err := os.ReadFile(filepath.Join(dir, "grafana/provisioning/datasources/prometheus.yaml"))
	if err != nil {
		fail("%v", err)
	}
	if err := yaml.Unmarshal(text, &provisioned); err != nil || len(provisioned.Datasources) == 0 {
		fail("grafana datasource provisioning: %v", err)
	}
	uid := provisioned.Datasources[0].UID
	var dashboard struct {
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
	}
	paths, err := filepath.Glob(filepath.Join(dir, "grafana/dashboards/*.json"))
	if err != nil || len(paths) == 0 {
		fail("grafana dashboards: none found (%v)", err)
	}
	panels := 0
	for _, path := range paths {
		dashboard.Panels = nil
		text, err = os.ReadFile(path)
		if err != nil {
			fail("%v", err)
		}
		if err := json.Unmarshal(text, &dashboard); err != nil {
			fail("grafana dashboard %s: %v", path, err)
		}
		for _, panel := range dashboard.Panels {
			if panel.Type != "row" && panel.Datasource.UID != uid {
				fail("%s: panel %q uses datasource %q, provisioned is %q", path, panel.Title, panel.Datasource.UID, uid)
			}
		}
		panels += len(dashboard.Panels)
	}
	fmt.Printf("ok grafana: %d dashboards, %d panels on datasource %s\n", len(paths), panels, uid)
}

func contains(list []string, item string) bool {
	for _, x := range list {
		if x == item {
			return true
		}
	}
	return false
}
