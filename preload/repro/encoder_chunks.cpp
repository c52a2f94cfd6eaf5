// An HEVC encoder plugin, in C++ over libx265, whose abort path drops its output chunks
// (the `encode-abort` incident, docs/incidents/heif-encoder-chunks.md).
//
// One encoder stays open for the whole run (x265 3.5 loses a parameter block per
// x265_encoder_open, so a session per frame would leak in x265 itself). Every frame is
// encoded and its NAL units copied into chunks the plugin owns. A normal frame's chunks
// are written out and released; every second frame is aborted, and the abort path only
// clears its list of chunks without releasing them (-DFIXED: it releases them).
//
// Usage: encoder_chunks FRAMES [MICROSECONDS_PER_FRAME]: the extra pace per frame (a
// sleep), for a run long enough to judge in time mode.
#include <x265.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "avsoak.h"

namespace plugin {

struct Chunk {
    uint32_t type;
    std::vector<uint8_t> data;
};

class EncoderSession {
  public:
    EncoderSession(int width, int height) : width_(width), height_(height) {
        param_ = x265_param_alloc();
        if (!param_ || x265_param_default_preset(param_, "ultrafast", "zerolatency") < 0)
            throw std::runtime_error("x265 has no ultrafast preset");
        param_->sourceWidth = width;
        param_->sourceHeight = height;
        param_->fpsNum = 25;
        param_->fpsDenom = 1;
        param_->logLevel = X265_LOG_ERROR;
        param_->frameNumThreads = 1;
        // A constant QP: x265 builds a motion-cost table per QP it meets, once, and a rate
        // control wandering over new QPs would add tables (bounded, ~52) for a long while.
        param_->rc.rateControlMode = X265_RC_CQP;
        param_->rc.qp = 32;
        encoder_ = x265_encoder_open(param_);
        if (!encoder_) throw std::runtime_error("x265_encoder_open failed");
        picture_ = x265_picture_alloc();
        x265_picture_init(param_, picture_);
        luma_.resize(static_cast<size_t>(width) * height);
        chroma_.resize(static_cast<size_t>(width / 2) * (height / 2), 128);
        picture_->planes[0] = luma_.data();
        picture_->planes[1] = chroma_.data();
        picture_->planes[2] = chroma_.data();
        picture_->stride[0] = width;
        picture_->stride[1] = width / 2;
        picture_->stride[2] = width / 2;
    }

    ~EncoderSession() {
        release(chunks_);
        x265_picture_free(picture_);
        x265_encoder_close(encoder_);
        x265_param_free(param_);
    }

    EncoderSession(const EncoderSession &) = delete;
    EncoderSession &operator=(const EncoderSession &) = delete;

    // Encodes one synthetic camera frame and keeps what the encoder returned.
    void encode(int64_t frame) {
        for (int y = 0; y < height_; y++)
            for (int x = 0; x < width_; x++)
                luma_[static_cast<size_t>(y) * width_ + x] =
                    static_cast<uint8_t>(x + y + frame * 3);
        picture_->pts = frame;
        x265_nal *nals = nullptr;
        uint32_t count = 0;
        if (x265_encoder_encode(encoder_, &nals, &count, picture_, nullptr) < 0)
            throw std::runtime_error("x265_encoder_encode failed");
        collect(nals, count);
    }

    // The normal path: hand the chunks on and release them.
    size_t write_out() {
        size_t bytes = 0;
        for (Chunk *c : chunks_) bytes += c->data.size();
        release(chunks_);
        return bytes;
    }

    // The abort path: stop this frame's output.
    void abort() {
#ifdef FIXED
        release(chunks_);
#else
        chunks_.clear();
#endif
    }

  private:
    __attribute__((noinline)) void collect(const x265_nal *nals, uint32_t count) {
        for (uint32_t i = 0; i < count; i++)
            chunks_.push_back(new Chunk{nals[i].type,
                                        std::vector<uint8_t>(nals[i].payload,
                                                             nals[i].payload + nals[i].sizeBytes)});
    }

    static void release(std::vector<Chunk *> &chunks) {
        for (Chunk *c : chunks) delete c;
        chunks.clear();
    }

    int width_, height_;
    x265_param *param_ = nullptr;
    x265_encoder *encoder_ = nullptr;
    x265_picture *picture_ = nullptr;
    std::vector<uint8_t> luma_, chroma_;
    std::vector<Chunk *> chunks_;
};

}  // namespace plugin

int main(int argc, char **argv) {
    long frames = argc > 1 ? std::atol(argv[1]) : 400;
    long us = argc > 2 ? std::atol(argv[2]) : 0;
    try {
        plugin::EncoderSession session(128, 96);
        size_t written = 0;
        for (long f = 0; f < frames; f++) {
            session.encode(f);
            if (f % 2 == 1)
                session.abort();
            else
                written += session.write_out();
            if (us > 0) std::this_thread::sleep_for(std::chrono::microseconds(us));
            AVSOAK_ITERATION(1);
        }
        std::printf("encoded %ld frames, wrote %zu bytes\n", frames, written);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "encoder_chunks: %s\n", e.what());
        return 1;
    }
    return 0;
}
